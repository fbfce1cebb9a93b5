#include "ckernels.h"

/* CKERNELS_SINGLE_TARGET: one version for the -march given (Tests/python/test_ckernels.py
 * builds each clone's target that way and checks it against numpy). */
#if defined(__x86_64__) && defined(__clang__) && !defined(CKERNELS_SINGLE_TARGET)
#define MULTIVERSIONED __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSIONED
#endif

/* Members per register tile: 2 × 4 accumulators plus the k and x operands fit in the 16
 * vector registers of AVX2 (32 with AVX-512). */
#define TILE 4

/* The kernel spectra stream from memory along 16–32 sources at once, more streams than the
 * hardware prefetchers follow: each is prefetched this many vectors ahead (of 4, 8 and 16,
 * 8 gave the fastest paper-network forward pass on AVX-512: 0.75 s vs 0.76 and 0.83 s). */
#define PREFETCH 8

/* re + i·im += (kr + i·ki)·(xr + i·xi), for vectors and scalars alike: four statements, so
 * four fused multiply–adds where the CPU has them, in this order in every caller. */
#define COMPLEX_MULTIPLY_ADD(re, im, kr, ki, xr, xi)                                                   \
    do {                                                                                               \
        re += (kr) * (xr);                                                                             \
        re -= (ki) * (xi);                                                                             \
        im += (kr) * (xi);                                                                             \
        im += (ki) * (xr);                                                                             \
    } while (0)

/* One definition for both precisions: VEC is a 64-byte vector of T (lowered to the widest
 * registers each clone has), LANES its length. Frequencies go LANES at a time with the
 * accumulators of up to TILE members in registers across the whole source sum; the last
 * count % LANES frequencies take the same arithmetic one at a time. */
#define SPECTRAL_MIX(NAME, T, VEC, LANES)                                                              \
    typedef T VEC __attribute__((vector_size(64), aligned(sizeof(T)), may_alias));                     \
                                                                                                       \
    static inline __attribute__((always_inline)) void NAME##_tile(                                     \
        T *y, ptrdiff_t y_member, const T *k, ptrdiff_t k_source, const T *x, ptrdiff_t x_member,      \
        ptrdiff_t x_source, const int tile, ptrdiff_t sources, ptrdiff_t i, ptrdiff_t stride, T sign,   \
        const int accumulate) {                                                                        \
        VEC re[TILE], im[TILE];                                                                        \
        for (int m = 0; m < tile; m++) {                                                               \
            if (accumulate) {                                                                          \
                re[m] = *(const VEC *)(y + m * y_member + i);                                          \
                im[m] = *(const VEC *)(y + m * y_member + stride + i);                                 \
            } else {                                                                                   \
                re[m] = im[m] = (VEC){0};                                                              \
            }                                                                                          \
        }                                                                                              \
        for (ptrdiff_t s = 0; s < sources; s++) {                                                      \
            const T *ks = k + s * k_source + i;                                                        \
            VEC kr = *(const VEC *)ks, ki = *(const VEC *)(ks + stride) * sign;                        \
            __builtin_prefetch(ks + PREFETCH * LANES);                                                 \
            __builtin_prefetch(ks + stride + PREFETCH * LANES);                                        \
            for (int m = 0; m < tile; m++) {                                                           \
                const T *xs = x + m * x_member + s * x_source + i;                                     \
                VEC xr = *(const VEC *)xs, xi = *(const VEC *)(xs + stride);                           \
                if (accumulate) { /* this source's product alone, then added */                        \
                    VEC pr = (VEC){0}, pi = (VEC){0};                                                  \
                    COMPLEX_MULTIPLY_ADD(pr, pi, kr, ki, xr, xi);                                      \
                    re[m] += pr;                                                                       \
                    im[m] += pi;                                                                       \
                } else {                                                                               \
                    COMPLEX_MULTIPLY_ADD(re[m], im[m], kr, ki, xr, xi);                                \
                }                                                                                      \
            }                                                                                          \
        }                                                                                              \
        for (int m = 0; m < tile; m++) {                                                               \
            *(VEC *)(y + m * y_member + i) = re[m];                                                    \
            *(VEC *)(y + m * y_member + stride + i) = im[m];                                           \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    static inline __attribute__((always_inline)) void NAME##_all(                                      \
        T *y, ptrdiff_t y_member, const T *k, ptrdiff_t k_source, const T *x, ptrdiff_t x_member,      \
        ptrdiff_t x_source, ptrdiff_t members, ptrdiff_t sources, ptrdiff_t count, ptrdiff_t stride,   \
        T sign, const int accumulate) {                                                                \
        ptrdiff_t i = 0;                                                                               \
        for (; i + LANES <= count; i += LANES) {                                                       \
            ptrdiff_t m = 0;                                                                           \
            for (; m + TILE <= members; m += TILE)                                                     \
                NAME##_tile(y + m * y_member, y_member, k, k_source, x + m * x_member, x_member,       \
                            x_source, TILE, sources, i, stride, sign, accumulate);                     \
            for (; m < members; m++)                                                                   \
                NAME##_tile(y + m * y_member, y_member, k, k_source, x + m * x_member, x_member,       \
                            x_source, 1, sources, i, stride, sign, accumulate);                        \
        }                                                                                              \
        for (; i < count; i++) {                                                                       \
            for (ptrdiff_t m = 0; m < members; m++) {                                                  \
                T *ym = y + m * y_member + i;                                                          \
                T re = accumulate ? ym[0] : 0, im = accumulate ? ym[stride] : 0;                       \
                for (ptrdiff_t s = 0; s < sources; s++) {                                              \
                    const T *ks = k + s * k_source + i, *xs = x + m * x_member + s * x_source + i;     \
                    T kr = ks[0], ki = ks[stride] * sign, xr = xs[0], xi = xs[stride];                 \
                    if (accumulate) {                                                                  \
                        T pr = 0, pi = 0;                                                              \
                        COMPLEX_MULTIPLY_ADD(pr, pi, kr, ki, xr, xi);                                  \
                        re += pr;                                                                      \
                        im += pi;                                                                      \
                    } else {                                                                           \
                        COMPLEX_MULTIPLY_ADD(re, im, kr, ki, xr, xi);                                  \
                    }                                                                                  \
                }                                                                                      \
                ym[0] = re;                                                                            \
                ym[stride] = im;                                                                       \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    MULTIVERSIONED void NAME(T *y, ptrdiff_t y_member, const T *k, ptrdiff_t k_source, const T *x,     \
                             ptrdiff_t x_member, ptrdiff_t x_source, ptrdiff_t members, ptrdiff_t sources, \
                             ptrdiff_t count, ptrdiff_t stride, int conjugate_k, int accumulate) {     \
        const T sign = conjugate_k ? -1 : 1; /* conj(k): the imaginary part negated */                \
        /* A constant mode per call site: each inlined copy keeps only its branch. */                  \
        if (accumulate)                                                                                \
            NAME##_all(y, y_member, k, k_source, x, x_member, x_source, members, sources, count, stride, sign, 1); \
        else                                                                                           \
            NAME##_all(y, y_member, k, k_source, x, x_member, x_source, members, sources, count, stride, sign, 0); \
    }

SPECTRAL_MIX(ckernels_spectral_mix_f32, float, ckernels_float_vector, 16)
SPECTRAL_MIX(ckernels_spectral_mix_f64, double, ckernels_double_vector, 8)

/* One definition for both precisions; the stages of SpectralPlan's y and z transforms.
 * Two consecutive stages run in one pass over memory (a radix-2² step: four rows loaded, four
 * butterflies in registers, four rows stored), which halves the passes over a block that
 * does not fit the L1 cache. Every element sees the same butterflies, in the same order, with
 * the same twiddles and the same expressions as stage-by-stage radix 2, so the results are
 * the same bits. An odd stage count takes one plain stage: the first (forward) or the last
 * (inverse), where half = n/2.
 * Forward (decimation in frequency): a, b ← a + b, (a − b)·(c − is).
 * Inverse (decimation in time): t = b·(c + is); a, b ← a + t, a − t. */
#define RADIX2(NAME, T)                                                                                \
    static inline __attribute__((always_inline)) void NAME##_butterfly(                                \
        T *ar, T *ai, T *br, T *bi, T c, T s, const int inverse) {                                     \
        T xr = *ar, xi = *ai, yr = *br, yi = *bi;                                                      \
        if (inverse) {                                                                                 \
            T tr = yr * c - yi * s, ti = yr * s + yi * c;                                              \
            *ar = xr + tr;                                                                             \
            *ai = xi + ti;                                                                             \
            *br = xr - tr;                                                                             \
            *bi = xi - ti;                                                                             \
        } else {                                                                                       \
            *ar = xr + yr;                                                                             \
            *ai = xi + yi;                                                                             \
            T dr = xr - yr, di = xi - yi;                                                              \
            *br = dr * c + di * s;                                                                     \
            *bi = di * c - dr * s;                                                                     \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    /* One stage on the row pair (a, b) with twiddle (c, s). */                                        \
    static inline __attribute__((always_inline)) void NAME##_pair(                                     \
        T *restrict ar, T *restrict br, ptrdiff_t imaginary, ptrdiff_t length, T c, T s, const int inverse) { \
        T *restrict ai = ar + imaginary, *restrict bi = br + imaginary;                                \
        for (ptrdiff_t i = 0; i < length; i++) {                                                       \
            NAME##_butterfly(ar + i, ai + i, br + i, bi + i, c, s, inverse);                           \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    /* Two stages on rows q0..q3: first (q0, q1) with twiddle tw[0..1] and (q2, q3) with     \
     * tw[2..3], then (q0, q2) with tw[4..5] and (q1, q3) with tw[6..7] (cosine, sine). */             \
    static inline __attribute__((always_inline)) void NAME##_quad(                                     \
        T *restrict r0, T *restrict r1, T *restrict r2, T *restrict r3, ptrdiff_t imaginary,           \
        ptrdiff_t length, const T *tw, const int inverse) {                                            \
        T *restrict i0 = r0 + imaginary, *restrict i1 = r1 + imaginary;                                \
        T *restrict i2 = r2 + imaginary, *restrict i3 = r3 + imaginary;                                \
        for (ptrdiff_t i = 0; i < length; i++) {                                                       \
            T a0 = r0[i], b0 = i0[i], a1 = r1[i], b1 = i1[i], a2 = r2[i], b2 = i2[i], a3 = r3[i], b3 = i3[i]; \
            NAME##_butterfly(&a0, &b0, &a1, &b1, tw[0], tw[1], inverse);                               \
            NAME##_butterfly(&a2, &b2, &a3, &b3, tw[2], tw[3], inverse);                               \
            NAME##_butterfly(&a0, &b0, &a2, &b2, tw[4], tw[5], inverse);                               \
            NAME##_butterfly(&a1, &b1, &a3, &b3, tw[6], tw[7], inverse);                               \
            r0[i] = a0, i0[i] = b0, r1[i] = a1, i1[i] = b1, r2[i] = a2, i2[i] = b2, r3[i] = a3, i3[i] = b3; \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    /* The plain stage half = n/2: rows j and j + n/2, twiddle j. */                                   \
    static inline __attribute__((always_inline)) void NAME##_outer_stage(                               \
        T *p, ptrdiff_t n, ptrdiff_t stride, ptrdiff_t length, ptrdiff_t imaginary, const T *cosines,  \
        const T *sines, const int inverse) {                                                           \
        for (ptrdiff_t j = 0; j < n / 2; j++)                                                          \
            NAME##_pair(p + j * stride, p + (j + n / 2) * stride, imaginary, length, cosines[j], sines[j], inverse); \
    }                                                                                                  \
                                                                                                       \
    static inline __attribute__((always_inline)) void NAME##_stages(                                   \
        T *p, ptrdiff_t n, ptrdiff_t stride, ptrdiff_t length, ptrdiff_t imaginary, const T *cosines,  \
        const T *sines, const int inverse) {                                                           \
        const int odd = n > 1 && (__builtin_ctzll((unsigned long long)n) & 1);                         \
        if (!inverse) {                                                                                \
            if (odd) NAME##_outer_stage(p, n, stride, length, imaginary, cosines, sines, 0);            \
            /* stages half and half/2; rows g+j, g+j+half (first stage), g+j+half/2, g+j+3half/2 */  \
            for (ptrdiff_t half = odd ? n / 4 : n / 2; half >= 2; half /= 4) {                         \
                ptrdiff_t step = n / (2 * half), quarter = half / 2;                                   \
                for (ptrdiff_t group = 0; group < n; group += 2 * half)                                \
                    for (ptrdiff_t j = 0; j < quarter; j++) {                                          \
                        const T tw[8] = {cosines[j * step], sines[j * step], cosines[(j + quarter) * step], \
                                         sines[(j + quarter) * step], cosines[2 * j * step], sines[2 * j * step], \
                                         cosines[2 * j * step], sines[2 * j * step]};                  \
                        T *r = p + (group + j) * stride;                                               \
                        NAME##_quad(r, r + half * stride, r + quarter * stride, r + (half + quarter) * stride, \
                                    imaginary, length, tw, 0);                                         \
                    }                                                                                  \
            }                                                                                          \
        } else {                                                                                       \
            /* stages half and 2·half; rows g+j, g+j+half (first stage), g+j+2half, g+j+3half */      \
            for (ptrdiff_t half = 1; 4 * half <= n; half *= 4) {                                       \
                ptrdiff_t step = n / (2 * half);                                                       \
                for (ptrdiff_t group = 0; group < n; group += 4 * half)                                \
                    for (ptrdiff_t j = 0; j < half; j++) {                                             \
                        const T tw[8] = {cosines[j * step], sines[j * step], cosines[j * step], sines[j * step], \
                                         cosines[j * step / 2], sines[j * step / 2],                   \
                                         cosines[(j + half) * step / 2], sines[(j + half) * step / 2]}; \
                        T *r = p + (group + j) * stride;                                               \
                        NAME##_quad(r, r + half * stride, r + 2 * half * stride, r + 3 * half * stride, \
                                    imaginary, length, tw, 1);                                         \
                    }                                                                                  \
            }                                                                                          \
            if (odd) NAME##_outer_stage(p, n, stride, length, imaginary, cosines, sines, 1);            \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    MULTIVERSIONED void NAME(T *p, ptrdiff_t n, ptrdiff_t stride, ptrdiff_t length, ptrdiff_t imaginary, \
                             const T *cosines, const T *sines, int inverse) {                          \
        if (inverse)                                                                                   \
            NAME##_stages(p, n, stride, length, imaginary, cosines, sines, 1);                         \
        else                                                                                           \
            NAME##_stages(p, n, stride, length, imaginary, cosines, sines, 0);                         \
    }

RADIX2(ckernels_radix2_f32, float)
RADIX2(ckernels_radix2_f64, double)

/* One definition for both precisions, on the vector types SPECTRAL_MIX defined. Outputs go
 * `vecs` vectors of LANES at a time, with the chunk's even sums and the odd sums' two terms
 * in separate registers — three independent chains of fused multiply–adds — across all
 * input rows, then interleaved into out once. Every chunk but a short row's reads
 * in[r][m + 1] inside the row: the chunks cover m < x − 1, the last one moved back to end
 * there (recomputing some outputs with the same arithmetic, hence the same values), and
 * output x − 1, whose in[r][x] is 0, is summed on its own. A row of at most LANES reads its
 * inputs copied into zero-padded vectors. (The GEMM + col2im lowering instead writes and
 * reads back 27 values per output channel and input voxel, which dominates for thin
 * layers.) */
#define DECONV_ROW(NAME, T, VEC, LANES)                                                                \
    static inline __attribute__((always_inline)) void NAME##_chunk(                                    \
        T *out, const T *const *in, const T *w, ptrdiff_t rows, ptrdiff_t m0, const int vecs,         \
        ptrdiff_t short_row, T bias, int relu) {                                                       \
        VEC e[2], oa[2], ob[2];                                                                        \
        for (int v = 0; v < vecs; v++) e[v] = oa[v] = ob[v] = (VEC){0};                                \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                         \
            const T w0 = w[3 * r], w1 = w[3 * r + 1], w2 = w[3 * r + 2];                               \
            const T *p = in[r] + m0;                                                                   \
            T padded[LANES + 1];                                                                       \
            if (short_row) {                                                                           \
                for (int j = 0; j < LANES + 1; j++) padded[j] = j < short_row ? p[j] : 0;              \
                p = padded;                                                                            \
            }                                                                                          \
            for (int v = 0; v < vecs; v++) {                                                           \
                VEC a = *(const VEC *)(p + v * LANES), b = *(const VEC *)(p + v * LANES + 1);          \
                e[v] += w1 * a;                                                                        \
                oa[v] += w2 * a;                                                                       \
                ob[v] += w0 * b;                                                                       \
            }                                                                                          \
        }                                                                                              \
        for (int v = 0; v < vecs; v++) {                                                               \
            T even[LANES], odd[LANES];                                                                 \
            *(VEC *)even = e[v] + bias;                                                                \
            *(VEC *)odd = (oa[v] + ob[v]) + bias;                                                      \
            T *o = out + 2 * (m0 + v * LANES);                                                         \
            const ptrdiff_t count = short_row ? short_row : LANES;                                     \
            for (ptrdiff_t j = 0; j < count; j++) {                                                    \
                o[2 * j] = relu && even[j] < 0 ? 0 : even[j];                                          \
                o[2 * j + 1] = relu && odd[j] < 0 ? 0 : odd[j];                                        \
            }                                                                                          \
        }                                                                                              \
    }                                                                                                  \
                                                                                                       \
    MULTIVERSIONED void NAME(T *out, const T *const *in, const T *w, ptrdiff_t rows, ptrdiff_t x,     \
                             T bias, int relu) {                                                       \
        if (x <= LANES) {                                                                              \
            NAME##_chunk(out, in, w, rows, 0, 1, x, bias, relu);                                       \
            return;                                                                                    \
        }                                                                                              \
        const ptrdiff_t inside = x - 1; /* outputs whose in[r][m + 1] lies in the row */               \
        ptrdiff_t m0 = 0;                                                                              \
        for (; inside - m0 >= 2 * LANES; m0 += 2 * LANES) NAME##_chunk(out, in, w, rows, m0, 2, 0, bias, relu); \
        for (; inside - m0 >= LANES; m0 += LANES) NAME##_chunk(out, in, w, rows, m0, 1, 0, bias, relu); \
        if (m0 < inside) NAME##_chunk(out, in, w, rows, inside - LANES, 1, 0, bias, relu);             \
        T e = 0, oa = 0;                                                                               \
        for (ptrdiff_t r = 0; r < rows; r++) {                                                         \
            e += w[3 * r + 1] * in[r][x - 1];                                                          \
            oa += w[3 * r + 2] * in[r][x - 1];                                                         \
        }                                                                                              \
        e += bias;                                                                                     \
        oa += bias;                                                                                    \
        out[2 * x - 2] = relu && e < 0 ? 0 : e;                                                        \
        out[2 * x - 1] = relu && oa < 0 ? 0 : oa;                                                      \
    }

DECONV_ROW(ckernels_deconv_row_f32, float, ckernels_float_vector, 16)
DECONV_ROW(ckernels_deconv_row_f64, double, ckernels_double_vector, 8)

/* One definition per feature dimension D (a constant, so the per-point loops over
 * coordinates unroll and the loop over points is the one that vectorises: the points'
 * simplices are independent). Double arithmetic, in the order the comments of
 * ckernels.h give and without fused multiply–adds, so every clone finds the same simplex
 * and weights. Ties of the nearest multiple round down. */
#define LATTICE_EMBED(D)                                                                               \
    static inline __attribute__((always_inline)) void lattice_embed_d##D(                              \
        const float *restrict features, ptrdiff_t count, const double *restrict scale,                 \
        const double *restrict shift, int32_t *restrict rem0_out, int32_t *restrict rank_out,          \
        float *restrict weight_out) {                                                                  \
        _Pragma("clang fp contract(off)") enum { d1 = D + 1 };                                         \
        const double inverse_d1 = 1.0 / d1;                                                            \
        for (ptrdiff_t i = 0; i < count; i++) {                                                        \
            const float *f = features + i * D;                                                         \
            double elevated[d1], residual[d1];                                                         \
            int32_t rem0[d1], rank[d1];                                                                \
            double sum = 0;                                                                            \
            for (int j = D; j > 0; j--) {                                                              \
                const double cf = (double)f[j - 1] * scale[j - 1] - shift[j - 1];                      \
                elevated[j] = sum - (double)j * cf;                                                    \
                sum += cf;                                                                             \
            }                                                                                          \
            elevated[0] = sum;                                                                         \
            /* The nearest multiple of d+1 to each elevated coordinate, by truncation (|v| <      \
             * 2^29); this step and the ranking are selects, not branches: on CT their outcomes   \
             * are unpredictable. */                                                              \
            int32_t remainder_sum = 0;                                                                 \
            for (int c = 0; c < d1; c++) {                                                             \
                const double v = elevated[c] * inverse_d1;                                             \
                const int32_t truncated = (int32_t)v;                                                  \
                const int32_t below = truncated - ((double)truncated > v ? 1 : 0);                     \
                const int32_t multiple = below + (v - (double)below > 0.5 ? 1 : 0);                    \
                rem0[c] = multiple * d1;                                                               \
                remainder_sum += multiple;                                                             \
            }                                                                                          \
            for (int c = 0; c < d1; c++) {                                                             \
                rank[c] = remainder_sum;                                                               \
                residual[c] = elevated[c] - (double)rem0[c];                                           \
            }                                                                                          \
            for (int a = 0; a < D; a++)                                                                \
                for (int b = a + 1; b < d1; b++) {                                                     \
                    const int32_t a_first = residual[a] < residual[b];                                 \
                    rank[a] += a_first;                                                                \
                    rank[b] += 1 - a_first;                                                            \
                }                                                                                      \
            /* Ranks shifted by the remainder sum; coordinates whose rank leaves 0...D move to the  \
             * neighbouring multiple, so that the remainder-0 point's coordinates sum to zero. */ \
            for (int c = 0; c < d1; c++) {                                                             \
                const int32_t wrap = (rank[c] < 0 ? d1 : 0) - (rank[c] > D ? d1 : 0);                  \
                rank[c] += wrap;                                                                       \
                rem0[c] += wrap;                                                                       \
            }                                                                                          \
            /* Barycentric weights (Adams et al. 2010, §3.1): with v_r the scaled residual of rank  \
             * r, w_0 = 1 + v_D − v_0 and w_k = v_(D−k) − v_(D+1−k); the residuals are put in rank \
             * order with selects, not a scatter through memory indexed by rank. */               \
            double sorted[d1];                                                                         \
            for (int r = 0; r < d1; r++) {                                                             \
                double v = 0;                                                                          \
                for (int c = 0; c < d1; c++) v += rank[c] == r ? elevated[c] - (double)rem0[c] : 0;    \
                sorted[r] = v * inverse_d1;                                                            \
            }                                                                                          \
            float *w = weight_out + i * d1;                                                            \
            w[0] = (float)(1 + sorted[D] - sorted[0]);                                                 \
            for (int k = 1; k < d1; k++) w[k] = (float)(sorted[D - k] - sorted[d1 - k]);               \
            for (int c = 0; c < d1; c++) {                                                             \
                rem0_out[i * d1 + c] = rem0[c];                                                        \
                rank_out[i * d1 + c] = rank[c];                                                        \
            }                                                                                          \
        }                                                                                              \
    }

LATTICE_EMBED(1)
LATTICE_EMBED(2)
LATTICE_EMBED(3)
LATTICE_EMBED(4)
LATTICE_EMBED(5)
LATTICE_EMBED(6)
LATTICE_EMBED(7)
LATTICE_EMBED(8)

MULTIVERSIONED void ckernels_lattice_embed(int dimension, const float *features, ptrdiff_t count, const double *scale,
                                          const double *shift, int32_t *rem0, int32_t *rank, float *weights) {
    switch (dimension) {
    case 1: lattice_embed_d1(features, count, scale, shift, rem0, rank, weights); break;
    case 2: lattice_embed_d2(features, count, scale, shift, rem0, rank, weights); break;
    case 3: lattice_embed_d3(features, count, scale, shift, rem0, rank, weights); break;
    case 4: lattice_embed_d4(features, count, scale, shift, rem0, rank, weights); break;
    case 5: lattice_embed_d5(features, count, scale, shift, rem0, rank, weights); break;
    case 6: lattice_embed_d6(features, count, scale, shift, rem0, rank, weights); break;
    case 7: lattice_embed_d7(features, count, scale, shift, rem0, rank, weights); break;
    case 8: lattice_embed_d8(features, count, scale, shift, rem0, rank, weights); break;
    default: break;
    }
}
