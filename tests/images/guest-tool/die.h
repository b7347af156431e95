/* The guest tools' way out: "PROGRAM: message" on stderr, exit status 1. Define PROGRAM before including this. */
#ifndef LKRUN_GUEST_TOOL_DIE_H
#define LKRUN_GUEST_TOOL_DIE_H

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void die(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fprintf(stderr, PROGRAM ": ");
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
    exit(1);
}

static _Noreturn void die_errno(const char *what)
{
    die("%s: %s", what, strerror(errno));
}

#endif
