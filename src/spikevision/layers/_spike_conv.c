/* Event-driven 2-D convolution of binary spike maps (float32, CPU), for training.
 *
 * A spike map is stored as bits: [N, Cin, words] uint64, one plane of L = H*W
 * bits per (sample, channel), bit p = 1 where x[n, i, p] == 1 (sc_pack_f32,
 * which also reports any value other than 0 and 1). The kernels walk the set
 * bits (count-trailing-zeros), so their work grows with the number of spikes:
 *
 *   forward  y[n, :, o]  = sum over the taps t of o, input p = p(o, t), channels i active at p: W[i, t, :]
 *   weight   dW[i, t, :] = sum over the spikes p of channel i (all n): dY[n, o(p, t), :]
 *
 * with the weight as [Cin, taps, C8] (Cout contiguous, padded with zeros to
 * C8, a multiple of 8) and the outputs of one sample as rows of C8 floats in
 * a per-thread scratch [Lo, C8] (Lo = Ho*Wo), transposed from / to the NCHW
 * tensors one sample at a time while it is in cache. Both kernels sum whole
 * rows in vector registers (chunks of up to 64 floats; only loads and adds):
 *
 * - forward: per sample, lists of the active channels of every input pixel;
 *   per output, the weight rows of all its (tap, active input) pairs are
 *   gathered into one index list, then summed (one short loop per output);
 * - weight gradient: per (sample, channel), the spikes in a list bucketed by
 *   phase (position modulo the stride: with stride 2 a spike reaches outputs
 *   through a quarter of the taps only), then per tap the output-gradient rows
 *   they reach are summed and added to dW[i, t, :].
 *
 * Channels-last maps (NHWC) take the same kernels: sc_pack_nhwc_f32 writes the same bit planes, and
 * with nhwc set the output rows are stored (and the output gradient's rows read) as they are, without
 * the per-sample transposes.
 *
 * Stride and padding live only in the tables built once per shape by
 * spike_conv.py. Threads split samples ([lo, hi) of n); the weight gradient of
 * each thread goes to its own accumulator, summed by the caller. The input
 * gradient is not here: it is dense (a transposed convolution, oneDNN).
 *
 * Built on first use by spikevision/layers/spike_conv.py (through
 * spikevision/native_build.py) and called through ctypes.
 */
#include <stdint.h>
#include <string.h>
#ifdef __AVX__
#include <immintrin.h>
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

int sc_abi_version(void) { return 4; }

/* 8 floats; v8u is the same at any float alignment (for loads and stores at any row offset) */
typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
typedef uint16_t v16h __attribute__((vector_size(32)));
typedef uint16_t v16hu __attribute__((vector_size(32), aligned(2)));

#ifdef __AVX__
/* 8 floats to 8 bits (bit k = x[k] == 1); *bad set if any is neither 0 nor 1 */
ALWAYS_INLINE uint64_t pack8(const float *x, int *bad)
{
    __m256 v = _mm256_loadu_ps(x);
    unsigned m1 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(1.0f), _CMP_EQ_OQ));
    unsigned m0 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_EQ_OQ));
    if ((m1 | m0) != 0xffu)
        *bad = 1;
    return m1;
}
#endif

/* 64 floats to 64 bits (bit k = x[k] == 1); *bad set if any is neither 0 nor 1 */
ALWAYS_INLINE uint64_t pack64(const float *x, int *bad)
{
    uint64_t word = 0;
#ifdef __AVX__
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    unsigned okall = 0xffffffffu;
    for (int k = 0; k < 8; k++) {
        __m256 v = _mm256_loadu_ps(x + 8 * k);
        unsigned m1 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, one, _CMP_EQ_OQ));
        unsigned m0 = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_EQ_OQ));
        word |= (uint64_t)m1 << (8 * k);
        okall &= (m1 | m0) | ~0xffu;
    }
    if (okall != 0xffffffffu)
        *bad = 1;
#else
    for (int k = 0; k < 64; k++) {
        word |= (uint64_t)(x[k] == 1.0f) << k;
        if (x[k] != 1.0f && x[k] != 0.0f)
            *bad = 1;
    }
#endif
    return word;
}

/* Planes [lo, hi) of x ([P, L] floats) to bits ([P, words]); returns 1 (and stops) at a value not 0 or 1. */
int sc_pack_f32(const float *x, uint64_t *bits, int64_t L, int64_t words, int64_t lo, int64_t hi)
{
    int bad = 0;
    for (int64_t p = lo; p < hi; p++) {
        const float *xp = x + p * L;
        uint64_t *bp = bits + p * words;
        int64_t w = 0;
        for (; (w + 1) * 64 <= L; w++)
            bp[w] = pack64(xp + w * 64, &bad);
        if (w < words) { /* the ragged end of the plane: whole vectors of 8, then single floats */
            uint64_t word = 0;
            int64_t k = w * 64;
#ifdef __AVX__
            for (; k + 8 <= L; k += 8)
                word |= pack8(xp + k, &bad) << (k - w * 64);
#endif
            for (; k < L; k++) {
                word |= (uint64_t)(xp[k] == 1.0f) << (k - w * 64);
                if (xp[k] != 1.0f && xp[k] != 0.0f)
                    bad = 1;
            }
            bp[w] = word;
        }
        if (bad)
            return 1;
    }
    return 0;
}

/* Samples [lo, hi) of a channels-last map x ([N, L, C] floats) to the same bit planes as sc_pack_f32
 * ([N, C, words]; every word written); returns 1 (and stops) at a value not 0 or 1. Each pixel's C
 * channels are compared in vectors; only its spikes touch the planes. */
int sc_pack_nhwc_f32(const float *x, uint64_t *bits, int64_t C, int64_t L, int64_t words, int64_t lo, int64_t hi)
{
    int bad = 0;
    for (int64_t n = lo; n < hi; n++) {
        uint64_t *bn = bits + n * C * words;
        memset(bn, 0, sizeof(uint64_t) * C * words);
        for (int64_t p = 0; p < L; p++) {
            const float *xp = x + (n * L + p) * C;
            const uint64_t bit = (uint64_t)1 << (p % 64);
            uint64_t *bw = bn + p / 64;
            for (int64_t c0 = 0; c0 < C; c0 += 64) {
                const int64_t m = C - c0 < 64 ? C - c0 : 64;
                uint64_t mask;
                if (m == 64) {
                    mask = pack64(xp + c0, &bad);
                } else {
                    mask = 0;
                    for (int64_t k = 0; k < m; k++) {
                        mask |= (uint64_t)(xp[c0 + k] == 1.0f) << k;
                        if (xp[c0 + k] != 1.0f && xp[c0 + k] != 0.0f)
                            bad = 1;
                    }
                }
                while (mask) {
                    bw[(c0 + __builtin_ctzll(mask)) * words] |= bit;
                    mask &= mask - 1;
                }
            }
        }
        if (bad)
            return 1;
    }
    return 0;
}


#ifdef __AVX__
/* dst[c][r] = src[r][c] for an 8 x 8 block (row strides ls, ld) */
ALWAYS_INLINE void transpose8(const float *src, int64_t ls, float *dst, int64_t ld)
{
    __m256 r[8], t[8], u[8];
    for (int k = 0; k < 8; k++)
        r[k] = _mm256_loadu_ps(src + k * ls);
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int k = 0; k < 4; k++) {
        _mm256_storeu_ps(dst + k * ld, _mm256_permute2f128_ps(u[k], u[k + 4], 0x20));
        _mm256_storeu_ps(dst + (k + 4) * ld, _mm256_permute2f128_ps(u[k], u[k + 4], 0x31));
    }
}
#endif

/* dst[c][r] = src[r][c] for r < rows, c < cols (row strides ld_src, ld_dst): 8 x 8 blocks, then the edges. */
static void transpose(const float *src, int64_t ld_src, float *dst, int64_t ld_dst, int64_t rows, int64_t cols)
{
    int64_t r8 = 0, c8 = 0;
#ifdef __AVX__
    r8 = rows / 8 * 8, c8 = cols / 8 * 8;
    for (int64_t r = 0; r < r8; r += 8)
        for (int64_t c = 0; c < c8; c += 8)
            transpose8(src + r * ld_src + c, ld_src, dst + c * ld_dst + r, ld_dst);
#endif
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = r < r8 ? c8 : 0; c < cols; c++)
            dst[c * ld_dst + r] = src[r * ld_src + c];
}

/* blocks transposes: dst[b * dst_step + c * ld_dst + r] = src[b * src_step + r * ld_src + c], r < rows, c < cols
 * (the weight laid out for the kernels and the weight gradient laid back, one tap per block where the layout
 * needs it). */
void sc_transpose_f32(const float *src, float *dst, int64_t rows, int64_t cols, int64_t ld_src, int64_t ld_dst,
                      int64_t blocks, int64_t src_step, int64_t dst_step)
{
    for (int64_t b = 0; b < blocks; b++)
        transpose(src + b * src_step, ld_src, dst + b * dst_step, ld_dst, rows, cols);
}

/* Per-pixel lists of sample n: the cnt[p] active channels i of pixel p, stored as i * taps (weight row
 * of tap 0) at lists[p * CL ...], CL = Cin rounded up to 16. */
static void pixel_lists(const uint64_t *bits, int64_t Cin, int64_t CL, int64_t taps, int64_t words, int64_t L,
                        int32_t *cnt, uint16_t *lists)
{
    memset(cnt, 0, sizeof(int32_t) * L);
    for (int64_t i = 0; i < Cin; i++) {
        const uint64_t *bp = bits + i * words;
        for (int64_t w = 0; w < words; w++) {
            uint64_t m = bp[w];
            while (m) {
                int64_t p = w * 64 + __builtin_ctzll(m);
                m &= m - 1;
                lists[p * CL + cnt[p]++] = (uint16_t)(i * taps);
            }
        }
    }
}

/* The weight rows (i * taps + t) of every active input of output o's (tap, input) pairs, as one list in
 * comb; returns its length. Copies whole vectors of 16 (pixel lists are CL long), so the loops are short. */
ALWAYS_INLINE int64_t output_list(const int32_t *pairs, int32_t npairs, const int32_t *cnt, const uint16_t *lists,
                                  int64_t CL, uint16_t *comb)
{
    int64_t k = 0;
    for (int32_t j = 0; j < npairs; j++) {
        const int32_t t = pairs[2 * j], p = pairs[2 * j + 1];
        const uint16_t *l = lists + p * CL;
        const v16h add = (v16h){0} + (uint16_t)t;
        int32_t q = 0;
        do {
            *(v16hu *)(comb + k + q) = *(const v16hu *)(l + q) + add;
        } while ((q += 16) < cnt[p]);
        k += cnt[p];
    }
    return k;
}

/* One output row of C8 floats, in chunks of NV vectors held in registers: the sum of the weight rows in comb. */
ALWAYS_INLINE void gather_row(const float *wt, const uint16_t *comb, int64_t k, int64_t C8, float *out, const int NV)
{
    for (int64_t c0 = 0; c0 < C8; c0 += 8 * NV) {
        v8 acc[8], acc2[8]; /* two sets: two rows in flight, not one chain of dependent adds */
        for (int v = 0; v < NV; v++)
            acc[v] = acc2[v] = (v8){0};
        int64_t q = 0;
        for (; q + 2 <= k; q += 2) {
            const float *r = wt + (int64_t)comb[q] * C8 + c0, *r2 = wt + (int64_t)comb[q + 1] * C8 + c0;
            for (int v = 0; v < NV; v++) {
                acc[v] += *(const v8u *)(r + 8 * v);
                acc2[v] += *(const v8u *)(r2 + 8 * v);
            }
        }
        if (q < k) {
            const float *r = wt + (int64_t)comb[q] * C8 + c0;
            for (int v = 0; v < NV; v++)
                acc[v] += *(const v8u *)(r + 8 * v);
        }
        for (int v = 0; v < NV; v++)
            *(v8u *)(out + c0 + 8 * v) = acc[v] + acc2[v];
    }
}

ALWAYS_INLINE void forward_sample(const float *wt, const int32_t *ocnt, const int32_t *otab, const int32_t *cnt,
                                  const uint16_t *lists, int64_t CL, int64_t taps, int64_t C8, int64_t Lo,
                                  uint16_t *comb, float *s, const int NV)
{
    for (int64_t o = 0; o < Lo; o++) {
        int64_t k = output_list(otab + o * taps * 2, ocnt[o], cnt, lists, CL, comb);
        gather_row(wt, comb, k, C8, s + o * C8, NV);
    }
}

/* Output rows s [Lo, C8] of one sample to y: NCHW [Cout, Lo] (transposed), or channels-last [Lo, Cout]. */
static void store_rows(const float *s, float *y, int64_t Cout, int64_t C8, int64_t Lo, int64_t nhwc)
{
    if (!nhwc)
        transpose(s, C8, y, Lo, Lo, Cout);
    else if (C8 == Cout)
        memcpy(y, s, sizeof(float) * Lo * Cout);
    else
        for (int64_t o = 0; o < Lo; o++)
            memcpy(y + o * Cout, s + o * C8, sizeof(float) * Cout);
}

/* Forward for samples [lo, hi): y [N, Cout, Lo] (nhwc: [N, Lo, Cout]) from bits [N, Cin, words] and wt
 * [Cin, taps, C8] (C8: Cout rounded up to 8, zero columns). Output o has ocnt[o] (tap, input position) pairs at
 * otab[o * taps * 2 ...]. Scratch per thread: s [Lo, C8] floats, cnt [L] int32, lists [L, CL] uint16
 * (CL: Cin rounded up to 16), comb [taps * CL + 16] uint16. */
void sc_forward_f32(const uint64_t *bits, const float *wt, float *y, float *s, int32_t *cnt, uint16_t *lists,
                    uint16_t *comb, const int32_t *ocnt, const int32_t *otab, int64_t Cin, int64_t Cout, int64_t C8,
                    int64_t taps, int64_t L, int64_t Lo, int64_t nhwc, int64_t lo, int64_t hi)
{
    const int64_t words = (L + 63) / 64, CL = (Cin + 15) / 16 * 16;
    const int nv = C8 % 64 == 0 ? 8 : C8 % 32 == 0 ? 4 : C8 % 16 == 0 ? 2 : 1;
    for (int64_t n = lo; n < hi; n++) {
        pixel_lists(bits + n * Cin * words, Cin, CL, taps, words, L, cnt, lists);
        switch (nv) {
        case 8: forward_sample(wt, ocnt, otab, cnt, lists, CL, taps, C8, Lo, comb, s, 8); break;
        case 4: forward_sample(wt, ocnt, otab, cnt, lists, CL, taps, C8, Lo, comb, s, 4); break;
        case 2: forward_sample(wt, ocnt, otab, cnt, lists, CL, taps, C8, Lo, comb, s, 2); break;
        default: forward_sample(wt, ocnt, otab, cnt, lists, CL, taps, C8, Lo, comb, s, 1); break;
        }
        store_rows(s, y + n * Cout * Lo, Cout, C8, Lo, nhwc);
    }
}

/* dwi[t, :] += sum over the events ev of g row ptab[p * taps + t], for every tap t with ok[t]. */
ALWAYS_INLINE void gather_taps(const int32_t *ev, int64_t k, const float *g, const int32_t *ptab, const uint8_t *ok,
                               int64_t taps, int64_t C8, float *dwi, const int NV)
{
    for (int64_t t = 0; t < taps; t++) {
        if (!ok[t])
            continue;
        for (int64_t c0 = 0; c0 < C8; c0 += 8 * NV) {
            v8 acc[8], acc2[8]; /* two sets, as in gather_row */
            for (int v = 0; v < NV; v++)
                acc[v] = acc2[v] = (v8){0};
            int64_t e = 0;
            for (; e + 2 <= k; e += 2) {
                const float *r = g + ptab[ev[e] * taps + t] + c0, *r2 = g + ptab[ev[e + 1] * taps + t] + c0;
                for (int v = 0; v < NV; v++) {
                    acc[v] += *(const v8u *)(r + 8 * v);
                    acc2[v] += *(const v8u *)(r2 + 8 * v);
                }
            }
            if (e < k) {
                const float *r = g + ptab[ev[e] * taps + t] + c0;
                for (int v = 0; v < NV; v++)
                    acc[v] += *(const v8u *)(r + 8 * v);
            }
            float *d = dwi + t * C8 + c0;
            for (int v = 0; v < NV; v++)
                *(v8u *)(d + 8 * v) = *(v8u *)(d + 8 * v) + (acc[v] + acc2[v]);
        }
    }
}

/* The spikes of one plane, bucketed by phase class pcls[p] (position modulo the stride): k[c] events
 * of class c at ev[c * L ...]. */
static void plane_events(const uint64_t *bp, int64_t words, const uint8_t *pcls, int64_t ncls, int64_t L,
                         int32_t *ev, int64_t *k)
{
    for (int64_t c = 0; c < ncls; c++)
        k[c] = 0;
    for (int64_t w = 0; w < words; w++)
        for (uint64_t m = bp[w]; m; m &= m - 1) {
            const int32_t p = (int32_t)(w * 64 + __builtin_ctzll(m));
            const int64_t c = pcls[p];
            ev[c * L + k[c]++] = p;
        }
}

/* Weight gradient of samples [lo, hi) and input channels [clo, chi), into the rows [clo, chi) of dw [Cin, taps, C8]
 * (zeroed first; a thread's own accumulator when threads split samples, a shared one when they split channels):
 * gy is [N, Cout, Lo] (nhwc: [N, Lo, Cout]); input p reaches, through tap t, the row ptab[p * taps + t] (a row offset into
 * g; the zero row Lo * C8 where it reaches none). Inputs of phase class c (pcls, ncls = stride_y *
 * stride_x classes) can reach outputs only through the taps t with tapok[c * taps + t]. Scratch per
 * thread: g [(Lo + 1), C8] floats, ev [ncls, L] int32. */
void sc_wgrad_f32(const uint64_t *bits, const float *gy, float *dw, float *g, int32_t *ev, const int32_t *ptab,
                  const uint8_t *pcls, const uint8_t *tapok, int64_t ncls, int64_t Cin, int64_t Cout, int64_t C8,
                  int64_t taps, int64_t L, int64_t Lo, int64_t nhwc, int64_t lo, int64_t hi, int64_t clo, int64_t chi)
{
    /* dw rows [clo, chi) (each taps x C8) are this call's alone: zeroed here, then summed over samples [lo, hi) */
    const int64_t words = (L + 63) / 64;
    const int nv = C8 % 64 == 0 ? 8 : C8 % 32 == 0 ? 4 : C8 % 16 == 0 ? 2 : 1;
    int64_t k[64];
    memset(dw + clo * taps * C8, 0, sizeof(float) * (chi - clo) * taps * C8);
    memset(g, 0, sizeof(float) * (Lo + 1) * C8);
    for (int64_t n = lo; n < hi; n++) {
        if (!nhwc)
            transpose(gy + n * Cout * Lo, Lo, g, C8, Cout, Lo);
        else /* rows of Cout; the padding columns stay zero from the memset */
            for (int64_t o = 0; o < Lo; o++)
                memcpy(g + o * C8, gy + (n * Lo + o) * Cout, sizeof(float) * Cout);
        for (int64_t i = clo; i < chi; i++) {
            plane_events(bits + (n * Cin + i) * words, words, pcls, ncls, L, ev, k);
            float *dwi = dw + i * taps * C8;
            for (int64_t c = 0; c < ncls; c++) {
                const int32_t *e = ev + c * L;
                const uint8_t *ok = tapok + c * taps;
                switch (nv) {
                case 8: gather_taps(e, k[c], g, ptab, ok, taps, C8, dwi, 8); break;
                case 4: gather_taps(e, k[c], g, ptab, ok, taps, C8, dwi, 4); break;
                case 2: gather_taps(e, k[c], g, ptab, ok, taps, C8, dwi, 2); break;
                default: gather_taps(e, k[c], g, ptab, ok, taps, C8, dwi, 1); break;
                }
            }
        }
    }
}
