/* startup.c: vector table and reset handler for the Cortex-M4/M7 runner (spikevision).
 *
 * On reset the core loads the initial stack pointer from word 0 of the vector table and jumps
 * to the reset handler in word 1. The handler copies the initialised data from flash to RAM,
 * zeroes .bss, fills the stack with a pattern (so the runner can report how deep it grew),
 * turns on the floating-point unit if the core has one (code built with -mfloat-abi=hard may
 * use its registers), and calls main(); main's return value becomes the emulator's exit status.
 * A fault prints its name over semihosting and exits with status 3, so a bad build never hangs.
 * Symbols come from the linker scripts in this folder (sections.ld).
 */
#include <stdint.h>

#include "semihost.h"

#define SV_STACK_PAINT 0x5AFEC0DEu
#define SV_CPACR (*(volatile uint32_t *)0xE000ED88u) /* coprocessor access control */
#define SV_CPACR_CP10_CP11_FULL (0xFu << 20)
#define SV_EXIT_FAULT 3u

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end;
extern uint32_t __stack_limit, __stack_top;

int main(void);
void sv_reset(void);

static void sv_fault(const char *what)
{
    sv_puts("spikevision runner: ");
    sv_puts(what);
    sv_puts("\n");
    sv_exit(SV_EXIT_FAULT);
}

static void sv_nmi(void) { sv_fault("NMI"); }
static void sv_hard_fault(void) { sv_fault("HardFault"); }
static void sv_mem_manage(void) { sv_fault("MemManage fault"); }
static void sv_bus_fault(void) { sv_fault("BusFault"); }
static void sv_usage_fault(void) { sv_fault("UsageFault"); }
static void sv_unexpected(void) { sv_fault("unexpected exception"); }

typedef void (*sv_handler)(void);

/* The architectural exceptions 0-15 (no device interrupt is enabled by the runner). */
__attribute__((section(".vectors"), used)) static const sv_handler sv_vectors[16] = {
    (sv_handler)(uintptr_t)&__stack_top, /* 0: initial main stack pointer */
    sv_reset,                            /* 1: reset */
    sv_nmi,                              /* 2 */
    sv_hard_fault,                       /* 3 */
    sv_mem_manage,                       /* 4 */
    sv_bus_fault,                        /* 5 */
    sv_usage_fault,                      /* 6 */
    0, 0, 0, 0,                          /* 7-10: reserved */
    sv_unexpected,                       /* 11: SVCall */
    sv_unexpected,                       /* 12: debug monitor */
    0,                                   /* 13: reserved */
    sv_unexpected,                       /* 14: PendSV */
    sv_unexpected,                       /* 15: SysTick */
};

/* Words of the stack region never written since reset, counted from its bottom. */
uint32_t sv_stack_untouched_bytes(void)
{
    const uint32_t *p = &__stack_limit;
    while (p < &__stack_top && *p == SV_STACK_PAINT) p++;
    return (uint32_t)((uintptr_t)p - (uintptr_t)&__stack_limit);
}

void sv_reset(void)
{
    const uint32_t *src = &__data_load;
    for (uint32_t *dst = &__data_start; dst < &__data_end;) *dst++ = *src++;
    for (uint32_t *dst = &__bss_start; dst < &__bss_end;) *dst++ = 0;
    /* paint the stack below this function's own frame (256 bytes of headroom) */
    uint32_t here;
    for (volatile uint32_t *p = &__stack_limit; (uintptr_t)p < (uintptr_t)&here - 256u;) *p++ = SV_STACK_PAINT;
#if defined(__ARM_FP)
    SV_CPACR |= SV_CPACR_CP10_CP11_FULL;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    sv_exit((uint32_t)main());
}
