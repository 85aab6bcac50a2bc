/* runner.c: classify images with an exported spiking network on an emulated Cortex-M (spikevision).
 *
 * Built by cortex_m.py with the export's <name>.c and these macros on the command line:
 *   SV_MODEL_HEADER  the export's header, e.g. "quickstart.h"
 *   SV_INFER         its entry point, e.g. quickstart_infer (uint8 image in, fixed-point logits out)
 *   SV_INPUT_SIZE    bytes per image, e.g. QUICKSTART_INPUT_SIZE
 *   SV_CLASSES       logits per image, e.g. QUICKSTART_CLASSES
 *
 * It reads raw images (SV_INPUT_SIZE bytes each, [C][H][W]) from the host file "images.bin" and
 * writes "logits.txt" there, both through semihosting, in the emulator's working directory:
 *
 *   calibration <instructions> <ticks>      a loop of known length, timed like one inference
 *   <class> <logit 0> ... <logit K-1> <ticks>   one line per image, the export's integer logits
 *   stack <bytes>                           the deepest the stack grew (it is painted at reset)
 *
 * Ticks are read from the board's CMSDK timer 0. Under QEMU's `-icount shift=0` every executed
 * instruction advances the virtual clock by 1 ns, so ticks are proportional to instructions; the
 * calibration line gives the ratio. They are an emulator's instruction counts, not a chip's cycles.
 * Exit status: 0 done, 1 a file could not be opened, 2 a partial image at the end of the file.
 */
#include <stdint.h>

#include SV_MODEL_HEADER
#include "semihost.h"

#define SV_TIMER_CTRL (*(volatile uint32_t *)0x40000000u)   /* CMSDK APB timer 0 */
#define SV_TIMER_VALUE (*(volatile uint32_t *)0x40000004u)  /* counts down at the board's clock */
#define SV_TIMER_RELOAD (*(volatile uint32_t *)0x40000008u)
#define SV_TIMER_ENABLE 1u
#define SV_CALIBRATION_LOOPS 500000u                          /* two instructions each */

uint32_t sv_stack_untouched_bytes(void);
extern uint32_t __stack_limit, __stack_top;

static uint8_t image[SV_INPUT_SIZE];
static int64_t logits[SV_CLASSES];
static char line[32 * (SV_CLASSES + 3)];

static int32_t sv_open(const char *path, uint32_t mode)
{
    uint32_t n = 0;
    while (path[n]) n++;
    const uint32_t args[3] = {(uint32_t)(uintptr_t)path, mode, n};
    return sv_semihost(SV_SYS_OPEN, args);
}

/* Returns the number of bytes read. */
static uint32_t sv_read(int32_t handle, void *buf, uint32_t n)
{
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, n};
    return n - (uint32_t)sv_semihost(SV_SYS_READ, args);
}

static void sv_write(int32_t handle, const char *buf, uint32_t n)
{
    const uint32_t args[3] = {(uint32_t)handle, (uint32_t)(uintptr_t)buf, n};
    (void)sv_semihost(SV_SYS_WRITE, args);
}

static void sv_close(int32_t handle) { (void)sv_semihost(SV_SYS_CLOSE, &handle); }

/* Append " <v>" in decimal at line[pos]; returns the new end. */
static uint32_t sv_put_int(uint32_t pos, int64_t v)
{
    char digits[24];
    uint32_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        digits[n++] = (char)('0' + (int)(u % 10u));
        u /= 10u;
    } while (u);
    line[pos++] = ' ';
    if (v < 0) line[pos++] = '-';
    while (n) line[pos++] = digits[--n];
    return pos;
}

/* Append " <word>" at line[pos]; returns the new end. */
static uint32_t sv_put_word(uint32_t pos, const char *word)
{
    line[pos++] = ' ';
    while (*word) line[pos++] = *word++;
    return pos;
}

/* Write line[0:pos] without its leading space, ending the line. */
static void sv_end_line(int32_t out, uint32_t pos)
{
    line[pos++] = '\n';
    sv_write(out, line + 1, pos - 1);
}

static void sv_timer_start(void)
{
    SV_TIMER_CTRL = 0;
    SV_TIMER_RELOAD = 0xFFFFFFFFu;
    SV_TIMER_VALUE = 0xFFFFFFFFu;
    SV_TIMER_CTRL = SV_TIMER_ENABLE;
}

__attribute__((noinline)) static void sv_calibration_loop(uint32_t n)
{
    __asm__ volatile("1:\n\tsubs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

int main(void)
{
    const int32_t in = sv_open("images.bin", SV_OPEN_READ_BINARY);
    const int32_t out = sv_open("logits.txt", SV_OPEN_WRITE_TEXT);
    if (in < 0 || out < 0) {
        sv_puts("spikevision runner: cannot open images.bin or logits.txt in the working directory\n");
        return 1;
    }
    sv_timer_start();
    uint32_t t0 = SV_TIMER_VALUE;
    sv_calibration_loop(SV_CALIBRATION_LOOPS);
    uint32_t t1 = SV_TIMER_VALUE;
    uint32_t pos = sv_put_word(0, "calibration");
    pos = sv_put_int(pos, 2 * (int64_t)SV_CALIBRATION_LOOPS);
    pos = sv_put_int(pos, (int64_t)(t0 - t1));
    sv_end_line(out, pos);

    int status = 0;
    for (;;) {
        const uint32_t got = sv_read(in, image, SV_INPUT_SIZE);
        if (got == 0) break;
        if (got != SV_INPUT_SIZE) {
            sv_puts("spikevision runner: images.bin ends inside an image\n");
            status = 2;
            break;
        }
        t0 = SV_TIMER_VALUE;
        const int cls = SV_INFER(image, logits);
        t1 = SV_TIMER_VALUE;
        pos = sv_put_int(0, cls);
        for (int k = 0; k < SV_CLASSES; k++) pos = sv_put_int(pos, logits[k]);
        pos = sv_put_int(pos, (int64_t)(t0 - t1));
        sv_end_line(out, pos);
    }
    const uint32_t stack_size = (uint32_t)((uintptr_t)&__stack_top - (uintptr_t)&__stack_limit);
    pos = sv_put_word(0, "stack");
    pos = sv_put_int(pos, (int64_t)(stack_size - sv_stack_untouched_bytes()));
    sv_end_line(out, pos);
    sv_close(in);
    sv_close(out);
    return status;
}
