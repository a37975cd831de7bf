#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/util.h"

int sdnotify(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    const size_t len = strlen(path);
    /* A path, or '@' for a Linux abstract socket (the leading NUL byte). */
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof sa.sun_path)
        return folio_err(FOLIO_EINVAL, "NOTIFY_SOCKET is not a socket path");
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@') sa.sun_path[0] = '\0';
    const socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return folio_err(FOLIO_EIO, "sd_notify: socket: %s", strerror(errno));
    const ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (const struct sockaddr *)&sa, salen);
    const int err = errno;
    close(fd);
    if (n < 0) return folio_err(FOLIO_EIO, "sd_notify to %s: %s", path, strerror(err));
    return 0;
}
