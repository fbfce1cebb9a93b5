/* A C consumer: segment_raw MODEL CT.raw NX NY NZ SX SY SZ MATRIX.bin MASK.raw
 * Reads int16 voxels (x fastest) and a 16-double row-major IJK->RAS matrix, writes the mask.
 * Also prints the sizes and offsets of the public structs for the binding layout test. */
#include <liverseg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

static void *read_file(const char *path, size_t size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    void *p = malloc(size);
    if (p && fread(p, 1, size, f) != size) { free(p); p = NULL; }
    fclose(f);
    return p;
}

int main(int argc, char **argv) {
    printf("layout volume %zu %zu %zu %zu %zu\n", sizeof(liverseg_volume), offsetof(liverseg_volume, dtype),
           offsetof(liverseg_volume, dims), offsetof(liverseg_volume, spacing), offsetof(liverseg_volume, ijk_to_ras));
    printf("layout params %zu %zu %zu %zu %zu %zu %zu %zu\n", sizeof(liverseg_segment_params),
           offsetof(liverseg_segment_params, max_tile_voxels), offsetof(liverseg_segment_params, threshold),
           offsetof(liverseg_segment_params, crf), offsetof(liverseg_segment_params, crf_params),
           offsetof(liverseg_segment_params, progress), offsetof(liverseg_segment_params, progress_user_data),
           offsetof(liverseg_segment_params, postprocess));
    printf("layout info %zu %zu %zu %zu\n", sizeof(liverseg_model_info), offsetof(liverseg_model_info, spacing),
           offsetof(liverseg_model_info, orientation), offsetof(liverseg_model_info, n_parameters));
    if (argc != 11) { fprintf(stderr, "usage: %s MODEL CT NX NY NZ SX SY SZ MATRIX MASK\n", argv[0]); return 2; }
    if (liverseg_abi_version() != LIVERSEG_ABI_VERSION) { fprintf(stderr, "ABI mismatch\n"); return 1; }
    liverseg_model *model = NULL;
    if (liverseg_model_load_file(argv[1], &model) != LIVERSEG_OK) {
        fprintf(stderr, "%s\n", liverseg_last_error());
        return 1;
    }
    liverseg_volume ct = {0};
    ct.dtype = LIVERSEG_DTYPE_INT16;
    for (int i = 0; i < 3; ++i) {
        ct.dims[i] = (size_t)strtoull(argv[3 + i], NULL, 10);
        ct.spacing[i] = strtod(argv[6 + i], NULL);
    }
    size_t n = ct.dims[0] * ct.dims[1] * ct.dims[2];
    void *voxels = read_file(argv[2], n * sizeof(int16_t));
    double *matrix = read_file(argv[9], 16 * sizeof(double));
    uint8_t *mask = malloc(n);
    if (!voxels || !matrix || !mask) { fprintf(stderr, "cannot read inputs\n"); return 1; }
    ct.data = voxels;
    ct.ijk_to_ras = matrix;
    liverseg_segment_params params = liverseg_segment_default_params();
    liverseg_status status = liverseg_segment(model, &ct, &params, mask, NULL);
    if (status != LIVERSEG_OK) { fprintf(stderr, "%s: %s\n", liverseg_status_name(status), liverseg_last_error()); return 1; }
    FILE *out = fopen(argv[10], "wb");
    if (!out || fwrite(mask, 1, n, out) != n) { fprintf(stderr, "cannot write mask\n"); return 1; }
    fclose(out);
    liverseg_model_free(model);
    free(voxels); free(matrix); free(mask);
    printf("ok %s\n", liverseg_version());
    return 0;
}
