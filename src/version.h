/* What runboat --version prints: runboat's version, then one line per
 * library it runs with, the run-time version where the library reports
 * one (libuv, libcurl and what it was built with, OpenSSL, jansson,
 * libyaml, glibc) and the compiled-in version otherwise (llhttp, built
 * from sources into the binary; wslay, which has no version call; toml++,
 * header-only), then where the default kubefiles are found. */
#ifndef RUNBOAT_VERSION_H
#define RUNBOAT_VERSION_H

struct buf;

/* Appends the text (several lines, each ending in '\n') to b. */
void version_describe(struct buf *b);

#endif
