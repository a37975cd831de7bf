/* validate: see validate.h. */
#include "validate.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/util.h"

int validate_model_name(const char *s) {
    if (!s || !*s || strlen(s) > 127 || !strcmp(s, "default") || !isalnum((unsigned char)s[0]))
        goto bad;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && !strchr("._:/-", *p)) goto bad;
    return 0;
bad:
    return folio_err(FOLIO_EINVAL, "name must be 1-127 characters of letters, digits and ._:/-, starting with a letter "
                                   "or digit (not 'default')");
}

int validate_model_dir(const char *path, char *real, size_t cap) {
    char buf[PATH_MAX], cfg[PATH_MAX + 16];
    struct stat st;
    if (!path || path[0] != '/') return folio_err(FOLIO_EINVAL, "path must be absolute");
    if (!realpath(path, buf))
        return folio_err(FOLIO_EINVAL, "path %.200s is not a model directory with a config.json: %s", path,
                         strerror(errno));
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return folio_err(FOLIO_EINVAL, "path %.200s is not a directory", path);
    snprintf(cfg, sizeof cfg, "%s/config.json", buf);
    if (stat(cfg, &st) != 0 || !S_ISREG(st.st_mode))
        return folio_err(FOLIO_EINVAL, "path %.200s has no config.json", path);
    if (strlen(buf) >= cap) return folio_err(FOLIO_EINVAL, "path %.200s is too long", path);
    memcpy(real, buf, strlen(buf) + 1);
    return 0;
}

int validate_template_inline(const char *v) { return v && (strstr(v, "{{") || strstr(v, "{%")); }

int validate_template_file(const char *value, const char *model_dir, char *real, size_t cap) {
    char dir[PATH_MAX], want[PATH_MAX * 2], file[PATH_MAX];
    struct stat st;
    if (!value || !*value) return folio_err(FOLIO_EINVAL, "chat_template is empty");
    if (!model_dir || !*model_dir || !realpath(model_dir, dir))
        return folio_err(FOLIO_EINVAL, "chat_template %.200s: the model directory is not known yet", value);
    if (value[0] == '/') snprintf(want, sizeof want, "%s", value);
    else snprintf(want, sizeof want, "%s/%s", dir, value);
    const size_t dl = strlen(dir);
    if (!realpath(want, file) || strncmp(file, dir, dl) != 0 || file[dl] != '/' || stat(file, &st) != 0 ||
        !S_ISREG(st.st_mode))
        return folio_err(FOLIO_EINVAL,
                         "chat_template must be template text (with {{ or {%%) or a file inside the model directory "
                         "%.200s; %.200s is not",
                         dir, value);
    if (strlen(file) >= cap) return folio_err(FOLIO_EINVAL, "chat_template %.200s: the path is too long", value);
    memcpy(real, file, strlen(file) + 1);
    return 0;
}
