/* Bind the dl* calls of _blas to their oldest x86-64 symbol versions.
 *
 * glibc 2.34 moved dlopen/dladdr/dlsym/dlclose from libdl into libc under a
 * new version (GLIBC_2.34); a module linked against that version does not load
 * on older glibc (Debian 11, Ubuntu 20.04, RHEL 8). glibc keeps the original
 * GLIBC_2.2.5 versions as compatibility symbols, so binding to them (and linking
 * libdl, a stub on 2.34+, where older glibc defines them) gives one binary that
 * loads on glibc 2.17 and later: the manylinux2014 floor.
 */
#ifndef CMLP_DL_COMPAT_H
#define CMLP_DL_COMPAT_H
#include <dlfcn.h>
#if defined(__GLIBC__) && defined(__x86_64__) && !defined(CMLP_NO_DL_COMPAT)
__asm__(".symver dlopen,dlopen@GLIBC_2.2.5");
__asm__(".symver dladdr,dladdr@GLIBC_2.2.5");
__asm__(".symver dlsym,dlsym@GLIBC_2.2.5");
__asm__(".symver dlclose,dlclose@GLIBC_2.2.5");
#endif
#endif
