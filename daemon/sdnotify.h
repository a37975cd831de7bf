#ifndef FOLIOD_SDNOTIFY_H
#define FOLIOD_SDNOTIFY_H

/* systemd's readiness protocol (sd_notify(3)) without linking libsystemd: one datagram to the
 * AF_UNIX socket named by $NOTIFY_SOCKET. The protocol is documented as stable for exactly this
 * use, and it keeps libsystemd out of the package's dependencies while the unit stays
 * Type=notify. Without $NOTIFY_SOCKET (not under systemd) it does nothing and returns 0. */
int sdnotify(const char *state); /* "READY=1\nSTATUS=...": 0, or a folio error code */

#endif
