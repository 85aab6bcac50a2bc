/* semihost.h: the few Arm semihosting calls the Cortex-M runner needs (spikevision).
 *
 * Semihosting lets a program on a debugged (or emulated) core ask the host to do I/O: the core
 * executes `bkpt 0xAB` with an operation number in r0 and a pointer to its arguments in r1, and
 * the debugger (here QEMU, run with `-semihosting-config enable=on,target=native`) performs the
 * operation and returns its result in r0. Operation numbers and argument blocks are those of
 * Arm's "Semihosting for AArch32 and AArch64" specification. On a board without a debugger
 * attached the breakpoint would stop the core: this is a test harness, not firmware.
 */
#ifndef SV_SEMIHOST_H
#define SV_SEMIHOST_H

#include <stdint.h>

#define SV_SYS_OPEN 0x01u
#define SV_SYS_CLOSE 0x02u
#define SV_SYS_WRITE0 0x04u
#define SV_SYS_WRITE 0x05u
#define SV_SYS_READ 0x06u
#define SV_SYS_EXIT_EXTENDED 0x20u

#define SV_OPEN_READ_BINARY 1u   /* fopen mode "rb" */
#define SV_OPEN_WRITE_TEXT 4u    /* fopen mode "w" */
#define SV_ADP_STOPPED_APPLICATION_EXIT 0x20026u

/* One semihosting call: r0 = operation, r1 = argument block; returns r0. */
static inline int32_t sv_semihost(uint32_t op, const void *args)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = args;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (int32_t)r0;
}

/* Print a NUL-terminated string on the host's console (QEMU's stderr). */
static inline void sv_puts(const char *s) { (void)sv_semihost(SV_SYS_WRITE0, s); }

/* Stop the emulator with this exit status (QEMU exits with it). */
static inline void sv_exit(uint32_t status)
{
    const uint32_t args[2] = {SV_ADP_STOPPED_APPLICATION_EXIT, status};
    (void)sv_semihost(SV_SYS_EXIT_EXTENDED, args);
    for (;;) {
    }
}

#endif
