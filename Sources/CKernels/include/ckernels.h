/* Hot loops of the network layers and the CRF lattice in C, so that each is compiled for
 * AVX-512, AVX2+FMA and baseline x86-64 and picked at load time by the CPU (GCC/Clang
 * function multiversioning). Swift builds for the baseline (SSE2) only. Internal:
 * libliverseg.so does not export these (only liverseg_* symbols;
 * Sources/LiversegCAPI/exports.map). */
#ifndef CKERNELS_H
#define CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/* The channel sums of an FFT convolution, per frequency, over split complex spectra (real
 * parts, then the imaginary parts `stride` values later), for members m < `members` and
 * frequencies i < `count`:
 *     y[m·y_member + i] (+)= Σ_{s < sources} op(k[s·k_source + i]) · x[m·x_member + s·x_source + i]
 * op is the complex conjugate when `conjugate_k` is non-zero. `accumulate` zero overwrites
 * y with the sum, run over s in order; non-zero adds each source's product to y in turn,
 * so one call with S sources gives the bits of S calls with one source each (the weight
 * gradient's blocks, whatever number of them share a call). Members share each k value
 * while it is in registers (several overlap-save blocks, or several input channels), which
 * is what makes this faster than a multiply–accumulate per (member, source) pair: the kernel
 * spectra are megabytes and come from memory. y must not overlap k or x. */
void ckernels_spectral_mix_f32(float *y, ptrdiff_t y_member, const float *k, ptrdiff_t k_source, const float *x,
                               ptrdiff_t x_member, ptrdiff_t x_source, ptrdiff_t members, ptrdiff_t sources,
                               ptrdiff_t count, ptrdiff_t stride, int conjugate_k, int accumulate);
void ckernels_spectral_mix_f64(double *y, ptrdiff_t y_member, const double *k, ptrdiff_t k_source, const double *x,
                               ptrdiff_t x_member, ptrdiff_t x_source, ptrdiff_t members, ptrdiff_t sources,
                               ptrdiff_t count, ptrdiff_t stride, int conjugate_k, int accumulate);

/* Radix-2 FFT over `n` (a power of two) elements `stride` apart, each a vector of `length`
 * complex values (real parts at p, imaginary parts at p + imaginary), in place; cosines and
 * sines hold cos(2πj/n), sin(2πj/n) for j < n/2. Forward (`inverse` zero): decimation in
 * frequency, natural order in, bit-reversed out, twiddles e^(−2πij/m). Inverse: decimation
 * in time, bit-reversed in, natural out, e^(+2πij/m). Unnormalised. The vectors must not
 * overlap (length <= stride, and the imaginary parts beyond every real part). */
void ckernels_radix2_f32(float *p, ptrdiff_t n, ptrdiff_t stride, ptrdiff_t length, ptrdiff_t imaginary,
                         const float *cosines, const float *sines, int inverse);
void ckernels_radix2_f64(double *p, ptrdiff_t n, ptrdiff_t stride, ptrdiff_t length, ptrdiff_t imaginary,
                         const double *cosines, const double *sines, int inverse);

/* One output row of a 3×3×3 transposed convolution with stride 2 (PyTorch ConvTranspose3d,
 * padding 1, output_padding 1), the sum over the `rows` input rows in[r] (x values each:
 * one per input channel and z, y tap feeding this output row) with x taps w[3r .. 3r+2]:
 *     out[2m]     = Σ_r w[3r+1]·in[r][m]
 *     out[2m + 1] = Σ_r w[3r+2]·in[r][m] + w[3r]·in[r][m+1]        (in[r][x] reads as 0)
 * for m < x, plus `bias`, then max(·, 0) when `relu` is non-zero (NaN stays NaN). out holds
 * 2x values. Each sum runs over r in order; an odd output adds its w[3r+2] products and its
 * w[3r] products as two separate sums, then those two. */
void ckernels_deconv_row_f32(float *out, const float *const *in, const float *w, ptrdiff_t rows, ptrdiff_t x,
                             float bias, int relu);
void ckernels_deconv_row_f64(double *out, const double *const *in, const double *w, ptrdiff_t rows, ptrdiff_t x,
                             double bias, int relu);

/* The permutohedral lattice's embedding (Adams, Baek & Davis 2010, §3.1) of `count` points
 * with `dimension` (1...8) float features each, point after point: with the lattice
 * coordinates x_c = features[c]·scale[c] − shift[c], the elevated point
 *     e_D = −D·x_{D−1},  e_j = Σ_{c ≥ j} x_c − j·x_{j−1} (0 < j < D),  e_0 = Σ_c x_c,
 * its enclosing simplex — rem0 (the nearest remainder-0 lattice point, D+1 coordinates) and
 * rank (each coordinate's rank 0...D) — and its D+1 barycentric weights, for point i at
 * rem0/rank/weights[i·(D+1) ...]. Double arithmetic without fused multiply–adds: every
 * CPU gets the same simplices and weights. |e_c| must stay below 2^29 (the caller checks
 * the features' span). A dimension outside 1...8 writes nothing. */
void ckernels_lattice_embed(int dimension, const float *features, ptrdiff_t count, const double *scale,
                           const double *shift, int32_t *rem0, int32_t *rank, float *weights);

#endif
