#ifndef FOLIO_VERSION_H
#define FOLIO_VERSION_H

/* The one version of foliod, folio-engine and the .deb. `make deb` refuses to build when the
 * top entry of packaging/debian/changelog says otherwise. */
#define FOLIO_VERSION "0.8.0"

#endif
