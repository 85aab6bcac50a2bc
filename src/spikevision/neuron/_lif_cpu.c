/* Fused multi-step LIF kernel for contiguous CPU tensors (float32 and float64).
 *
 * The same recurrence as spikevision/neuron/functional.py, in one pass over
 * the sequence instead of a dozen tensor ops per step. Elements are processed
 * in blocks: the membrane (or the carried gradient) of a block stays in a small
 * local array across the time loop, and the inner loop over the block is plain
 * branch-free arithmetic that the compiler vectorises. The neuron's discrete
 * choices (reset kind, what to keep, surrogate) are compile-time constants of
 * an always-inlined body, so every combination gets its own straight loop.
 *
 * Built on first use by spikevision/neuron/_native.py (through
 * spikevision/native_build.py) with the system C compiler and called through
 * ctypes; the PyTorch kernel runs whenever this library is unavailable.
 *
 * Layout: x, s and the gradients are [T, N] row-major; h is an array of T
 * pointers to [N] steps (separate step tensors recycle better in the allocator
 * than one [T, N] block, as in the PyTorch kernel); code is
 * [ceil(T/4), N] int8 holding four 2-bit digits per byte (digit = in-window +
 * 2 * spike with a hard reset, else the window bit alone), stored minus 128,
 * exactly as the PyTorch kernel stores it.
 *
 * A time-broadcast input (params.broadcast: the same current at every step, as
 * u.expand(T, ...) gives): x is one [N] row read at every step, so no [T, N]
 * copy is made; backward then writes into a [N] grad_x the input gradient
 * summed over the steps (the gradient of the row), again without a [T, N] buffer.
 *
 * Float contraction is off (-ffp-contract=off): every product and sum rounds
 * once, as in a per-step PyTorch loop.
 */
#include <math.h>
#include <stdint.h>

#ifdef SV_LIBMVEC
/* glibc's vector math library: lets the sigmoid surrogate's exp vectorise */
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern double exp(double);
#endif

#define BLOCK 256
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* the codes of spikevision/neuron/kernel.py (RESET_CODES, SURROGATE_CODES) */
enum { RESET_HARD = 0, RESET_SOFT = 1, RESET_NONE = 2 };
enum { SG_RECTANGULAR = 0, SG_SIGMOID = 1, SG_ATAN = 2, SG_TRIANGLE = 3 };
enum { KEEP_NOTHING = 0, KEEP_H = 1, KEEP_CODE = 2 };
enum { OUT_STORE = 0, OUT_ADD = 1, OUT_FINISH = 2 };

typedef struct {
    double decay, gain, v_th, v_reset, v_rest;
    int reset, strict, detach_reset;
    int surrogate;      /* SG_* */
    double sg_a, sg_b;  /* rectangular: width; sigmoid, atan: alpha; triangle: width, peak */
    int broadcast;      /* x (forward) and grad_x (backward) are one [N] row for all T steps */
} lif_params;

/* Dispatch: each case calls an always-inlined body with constant choices,
 * which the compiler turns into its own branch-free loop. */
#define FWD_CASE(SUFFIX, R)                                                                        \
    case R:                                                                                        \
        if (keep == KEEP_CODE) forward_body_##SUFFIX(x, s, h, code, T, N, lo, n, p, R, KEEP_CODE); \
        else if (keep == KEEP_H) forward_body_##SUFFIX(x, s, h, code, T, N, lo, n, p, R, KEEP_H);  \
        else forward_body_##SUFFIX(x, s, h, code, T, N, lo, n, p, R, KEEP_NOTHING);                \
        break;
#define BWD_CODE_CASE(SUFFIX, R, D)                                                                \
    case (R) * 2 + (D):                                                                            \
        backward_body_##SUFFIX(gs, h, code, gx, T, N, lo, n, p, R, D, SG_RECTANGULAR, 1, bcast);    \
        break;
#define BWD_H_CASE(SUFFIX, R, D, K)                                                                \
    case (R) * 8 + (D) * 4 + (K):                            \
        backward_body_##SUFFIX(gs, h, code, gx, T, N, lo, n, p, R, D, K, 0, bcast);                \
        break;
#define BWD_H_CASES(SUFFIX, R, D)                                                                  \
    BWD_H_CASE(SUFFIX, R, D, SG_RECTANGULAR) BWD_H_CASE(SUFFIX, R, D, SG_SIGMOID)                  \
    BWD_H_CASE(SUFFIX, R, D, SG_ATAN) BWD_H_CASE(SUFFIX, R, D, SG_TRIANGLE)

/* one step of backward_body: the block's reverse-recurrence step writing OUT in MODE */
#define SV_STEP(SUFFIX, OUT, SUM, MODE)                                                            \
    backward_step_##SUFFIX(gst, ht, acc, shift, g_next, OUT, SUM, n, p, reset, detach, kind, compact, MODE)

#define DEFINE_KERNELS(REAL, SUFFIX, EXP, ABS)                                                     \
                                                                                                   \
ALWAYS_INLINE REAL surrogate_##SUFFIX(REAL u, const int kind, REAL a, REAL b) {                    \
    /* kind is a constant at every call site: one arm survives */                                  \
    if (kind == SG_RECTANGULAR)                                                                    \
        return ABS(u) < a * (REAL)0.5 ? (REAL)1 / a : (REAL)0;                                     \
    if (kind == SG_SIGMOID) {                                                                      \
        REAL sig = (REAL)1 / ((REAL)1 + EXP(-(u * a)));                                            \
        return sig * ((REAL)1 - sig) * a;                                                          \
    }                                                                                              \
    if (kind == SG_ATAN) {                                                                         \
        REAL z = u * ((REAL)1.5707963267948966 * a);                                               \
        return a * (REAL)0.5 / ((REAL)1 + z * z);                                                  \
    }                                                                                              \
    REAL tri = (REAL)1 - ABS(u) * ((REAL)2 / a);                                                   \
    return (tri > (REAL)0 ? tri : (REAL)0) * b;                                                    \
}                                                                                                  \
                                                                                                   \
ALWAYS_INLINE void forward_body_##SUFFIX(const REAL *restrict x, REAL *restrict s,                 \
                                         REAL *const *h, int8_t *restrict code, int64_t T,         \
                                         int64_t N, int64_t lo, int64_t n, const lif_params *p,    \
                                         const int reset, const int keep) {                        \
    REAL v[BLOCK];                                                                                 \
    int acc[BLOCK];                                                                                \
    const REAL decay = (REAL)p->decay, gain = (REAL)p->gain, v_th = (REAL)p->v_th;                 \
    const REAL v_reset = (REAL)p->v_reset, v_rest = (REAL)p->v_rest;                               \
    const REAL half = (REAL)p->sg_a * (REAL)0.5;                                                   \
    const int nonstrict = !p->strict;                                                              \
    const int64_t x_step = p->broadcast ? 0 : N; /* a time-broadcast x: the same row every step */ \
    for (int64_t i = 0; i < n; ++i) v[i] = v_rest;                                                 \
    for (int64_t t = 0; t < T; ++t) {                                                              \
        const REAL *restrict xt = x + t * x_step + lo;                                             \
        REAL *restrict st = s + t * N + lo;                                                        \
        REAL *restrict ht = keep == KEEP_H ? h[t] + lo : 0;                                        \
        const int shift = 2 * (int)(t % 4);                                                        \
        const int first = shift == 0;                                                              \
        for (int64_t i = 0; i < n; ++i) {                                                          \
            /* with v = v_rest this is v_rest + gain x: the first step needs no branch */          \
            const REAL hv = decay * (v[i] - v_rest) + v_rest + gain * xt[i];                       \
            const int fired = (hv > v_th) | (nonstrict & (hv == v_th));                            \
            st[i] = (REAL)fired;                                                                   \
            if (keep == KEEP_H) ht[i] = hv;                                                        \
            if (reset == RESET_HARD) v[i] = fired ? v_reset : hv;                                  \
            else if (reset == RESET_SOFT) v[i] = hv - v_th * (REAL)fired; /* branch-free: exact */ \
            else v[i] = hv;                                                                        \
            if (keep == KEEP_CODE) {                                                               \
                int digit = ABS(hv - v_th) < half;                                                 \
                if (reset == RESET_HARD) digit += 2 * fired;                                       \
                acc[i] = (first ? 0 : acc[i]) + (digit << shift);                                  \
            }                                                                                      \
        }                                                                                          \
        if (keep == KEEP_CODE && (shift == 6 || t == T - 1)) {                                     \
            int8_t *restrict ct = code + (t / 4) * N + lo;                                         \
            for (int64_t i = 0; i < n; ++i) ct[i] = (int8_t)(acc[i] ^ 0x80);                       \
        }                                                                                          \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* One step of the reverse recurrence over a block: G_t = dL/dH_t from G_{t+1} (g_next, updated in \
 * place), and what it writes (mode, a constant at each call): OUT_STORE out = gain G_t (a step of \
 * grad_x, or the first term of a broadcast input's sum), OUT_ADD out += gain G_t (the sum's middle\
 * terms), OUT_FINISH out = sum + gain G_t (its last term, straight into grad_x). From code (compact:\
 * rectangular surrogate, detached or no hard reset) or from ht. */                                \
ALWAYS_INLINE void backward_step_##SUFFIX(const REAL *restrict gst, const REAL *restrict ht,       \
                                          const int *restrict acc, const int shift,                \
                                          REAL *restrict g_next, REAL *restrict out,               \
                                          const REAL *restrict sum, int64_t n, const lif_params *p,\
                                          const int reset, const int detach, const int kind,       \
                                          const int compact, const int mode) {                     \
    const REAL decay = (REAL)p->decay, gain = (REAL)p->gain, v_th = (REAL)p->v_th;                 \
    const REAL v_reset = (REAL)p->v_reset, a = (REAL)p->sg_a, b = (REAL)p->sg_b;                   \
    const REAL height = (REAL)1 / a;                                                               \
    const int nonstrict = !p->strict;                                                              \
    for (int64_t i = 0; i < n; ++i) {                                                              \
        REAL sg, dv;                                                                               \
        if (compact) {                                                                             \
            const int digit = (acc[i] >> shift) & 3;                                               \
            sg = (digit & 1) ? height : (REAL)0;                                                   \
            if (reset == RESET_HARD) dv = (REAL)((digit >> 1) ^ 1); /* detached: 1 - S */          \
            else if (reset == RESET_SOFT && !detach) dv = (REAL)1 - v_th * sg;                     \
            else dv = (REAL)1;                                                                     \
        } else {                                                                                   \
            const REAL hv = ht[i];                                                                 \
            sg = surrogate_##SUFFIX(hv - v_th, kind, a, b);                                        \
            const int fired = (hv > v_th) | (nonstrict & (hv == v_th));                            \
            if (reset == RESET_HARD)                                                               \
                dv = detach ? (REAL)(fired ^ 1) : (REAL)(fired ^ 1) + (v_reset - hv) * sg;         \
            else if (reset == RESET_SOFT)                                                          \
                dv = detach ? (REAL)1 : (REAL)1 - v_th * sg;                                       \
            else                                                                                   \
                dv = (REAL)1;                                                                      \
        }                                                                                          \
        REAL g = gst[i] * sg + decay * g_next[i] * dv;                                             \
        g_next[i] = g;                                                                             \
        if (mode == OUT_STORE) out[i] = gain * g;                                                  \
        else if (mode == OUT_ADD) out[i] += gain * g;                                              \
        else out[i] = sum[i] + gain * g;                                                           \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
/* The reverse scan over the steps of a block; with bcast, grad_x is one row: the sum over the     \
 * steps of gain G_t (a time-broadcast input), added up in g_sum from t = T-1 down to 0. */        \
ALWAYS_INLINE void backward_body_##SUFFIX(const REAL *restrict grad_s, const REAL *const *h,       \
                                          const int8_t *restrict code,                             \
                                          REAL *restrict grad_x, int64_t T, int64_t N, int64_t lo, \
                                          int64_t n, const lif_params *p, const int reset,         \
                                          const int detach, const int kind, const int compact,     \
                                          const int bcast) {                                       \
    REAL g_next[BLOCK], g_sum[BLOCK];                                                              \
    int acc[BLOCK];                                                                                \
    for (int64_t i = 0; i < n; ++i) g_next[i] = (REAL)0;                                           \
    for (int64_t t = T - 1; t >= 0; --t) {                                                         \
        const int shift = 2 * (int)(t % 4);                                                        \
        if (compact && (shift == 6 || t == T - 1)) {                                               \
            const int8_t *restrict ct = code + (t / 4) * N + lo;                                   \
            for (int64_t i = 0; i < n; ++i) acc[i] = (uint8_t)ct[i] ^ 0x80;                        \
        }                                                                                          \
        const REAL *restrict gst = grad_s + t * N + lo;                                            \
        const REAL *restrict ht = compact ? 0 : h[t] + lo;                                         \
        if (!bcast) SV_STEP(SUFFIX, grad_x + t * N + lo, 0, OUT_STORE);                            \
        else if (t == 0) {                                                                         \
            if (T == 1) SV_STEP(SUFFIX, grad_x + lo, 0, OUT_STORE);                                \
            else SV_STEP(SUFFIX, grad_x + lo, g_sum, OUT_FINISH);                                  \
        } else if (t == T - 1) SV_STEP(SUFFIX, g_sum, 0, OUT_STORE);                               \
        else SV_STEP(SUFFIX, g_sum, 0, OUT_ADD);                                                   \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
static void forward_block_##SUFFIX(const REAL *x, REAL *s, REAL *const *h, int8_t *code, int64_t T, \
                                   int64_t N, int64_t lo, int64_t n, const lif_params *p) {        \
    const int keep = code ? KEEP_CODE : h ? KEEP_H : KEEP_NOTHING;                                 \
    switch (p->reset) {                                                                            \
    FWD_CASE(SUFFIX, RESET_HARD) FWD_CASE(SUFFIX, RESET_SOFT) FWD_CASE(SUFFIX, RESET_NONE)         \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
ALWAYS_INLINE void backward_switch_##SUFFIX(const REAL *gs, const REAL *const *h,                  \
                                            const int8_t *code, REAL *gx, int64_t T, int64_t N,    \
                                            int64_t lo, int64_t n, const lif_params *p,            \
                                            const int bcast) {                                     \
    if (code) {                                                                                    \
        /* the code is kept only with a detached hard reset (see _is_compact) */                \
        switch (p->reset * 2 + (p->reset == RESET_SOFT ? p->detach_reset : 1)) {                   \
        BWD_CODE_CASE(SUFFIX, RESET_HARD, 1) BWD_CODE_CASE(SUFFIX, RESET_SOFT, 0)                  \
        BWD_CODE_CASE(SUFFIX, RESET_SOFT, 1) BWD_CODE_CASE(SUFFIX, RESET_NONE, 1)                  \
        }                                                                                          \
        return;                                                                                    \
    }                                                                                              \
    /* without a reset, detach_reset changes nothing: those calls take the D = 0 loop */         \
    switch (p->reset * 8 + (p->reset == RESET_NONE ? 0 : p->detach_reset) * 4 + p->surrogate) {                                   \
    BWD_H_CASES(SUFFIX, RESET_HARD, 0) BWD_H_CASES(SUFFIX, RESET_HARD, 1)                          \
    BWD_H_CASES(SUFFIX, RESET_SOFT, 0) BWD_H_CASES(SUFFIX, RESET_SOFT, 1)                          \
    BWD_H_CASES(SUFFIX, RESET_NONE, 0)                                                             \
    }                                                                                              \
}                                                                                                  \
                                                                                                   \
static void backward_block_##SUFFIX(const REAL *gs, const REAL *const *h, const int8_t *code,      \
                                    REAL *gx, int64_t T, int64_t N, int64_t lo, int64_t n,         \
                                    const lif_params *p) {                                         \
    /* the broadcast choice as a constant too: a loop of its own, no per-element branch */         \
    if (p->broadcast) backward_switch_##SUFFIX(gs, h, code, gx, T, N, lo, n, p, 1);               \
    else backward_switch_##SUFFIX(gs, h, code, gx, T, N, lo, n, p, 0);                            \
}                                                                                                  \
                                                                                                   \
/* Exported entry points: elements [lo, hi) of every step (the caller splits                     \
 * the elements over threads). */                                                                 \
void lif_forward_##SUFFIX(const REAL *x, REAL *s, REAL *const *h, int8_t *code, int64_t T, int64_t N, \
                          int64_t lo, int64_t hi, const lif_params *p) {                           \
    for (int64_t b = lo; b < hi; b += BLOCK)                                                       \
        forward_block_##SUFFIX(x, s, h, code, T, N, b, (b + BLOCK < hi ? b + BLOCK : hi) - b, p);  \
}                                                                                                  \
                                                                                                   \
void lif_backward_##SUFFIX(const REAL *grad_s, const REAL *const *h,                               \
                           const int8_t *code, REAL *grad_x, int64_t T, int64_t N,                 \
                           int64_t lo, int64_t hi, const lif_params *p) {                          \
    for (int64_t b = lo; b < hi; b += BLOCK)                                                       \
        backward_block_##SUFFIX(grad_s, h, code, grad_x, T, N, b,                          \
                                (b + BLOCK < hi ? b + BLOCK : hi) - b, p);                         \
}

DEFINE_KERNELS(float, f32, expf, fabsf)
DEFINE_KERNELS(double, f64, exp, fabs)

int lif_abi_version(void) { return 2; }
