/* A program written for liverseg 0.1 and compiled against 0.1's header
 * (Tests/consumers/abi-0.1/liverseg.h), run with the current library:
 *   segment_abi_0_1 MODEL CT.raw NX NY NZ SX SY SZ MATRIX.bin MASK.raw
 * It segments int16 voxels with 0.1's default params (0.1's liverseg_segment_default_params
 * symbol and struct_size), writes the mask, and checks that the library's 0.1 default-params
 * function and liverseg_model_get_info (0.1's liverseg_model_info, before n_networks) write
 * no byte beyond the 0.1 structs. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <liverseg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *read_file(const char *path, size_t size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    void *p = malloc(size);
    if (p && fread(p, 1, size, f) != size) { free(p); p = NULL; }
    fclose(f);
    return p;
}

#if defined(__x86_64__)
/* On x86-64 (System V) a struct of this size is returned through a hidden pointer in %rdi,
 * so the function can be called with an explicit destination to see every byte it writes. */
typedef void (*returns_through)(void *destination);
static int default_params_stay_in_bounds(void) {
    void *symbol = dlsym(RTLD_DEFAULT, "liverseg_segment_default_params");
    if (!symbol) return 0;
    returns_through call;
    memcpy(&call, &symbol, sizeof call);
    unsigned char buffer[2 * sizeof(liverseg_segment_params)];
    memset(buffer, 0xA5, sizeof buffer);
    call(buffer);
    for (size_t i = sizeof(liverseg_segment_params); i < sizeof buffer; ++i)
        if (buffer[i] != 0xA5) return 0;
    return 1;
}
#else
static int default_params_stay_in_bounds(void) { return 1; }
#endif

/* liverseg_model_get_info with 0.1's struct_size fills the 0.1 fields and nothing after them. */
static int model_info_stays_in_bounds(liverseg_model *model) {
    struct {
        liverseg_model_info info;
        unsigned char tail[64];
    } guarded;
    memset(&guarded, 0xA5, sizeof guarded);
    guarded.info.struct_size = sizeof guarded.info;
    if (liverseg_model_get_info(model, &guarded.info) != LIVERSEG_OK) return 0;
    for (size_t i = 0; i < sizeof guarded.tail; ++i)
        if (guarded.tail[i] != 0xA5) return 0;
    return guarded.info.struct_size == sizeof guarded.info && guarded.info.n_parameters > 0 &&
           guarded.info.n_classes == 2;
}

int main(int argc, char **argv) {
    if (argc != 11) { fprintf(stderr, "usage: %s MODEL CT NX NY NZ SX SY SZ MATRIX MASK\n", argv[0]); return 2; }
    if (!default_params_stay_in_bounds()) { fprintf(stderr, "default params wrote beyond the 0.1 struct\n"); return 1; }
    liverseg_segment_params params = liverseg_segment_default_params();
    if (params.struct_size != sizeof params) {
        fprintf(stderr, "struct_size %zu, 0.1 layout %zu\n", params.struct_size, sizeof params);
        return 1;
    }
    liverseg_model *model = NULL;
    if (liverseg_model_load_file(argv[1], &model) != LIVERSEG_OK) { fprintf(stderr, "%s\n", liverseg_last_error()); return 1; }
    if (!model_info_stays_in_bounds(model)) { fprintf(stderr, "model info: %s\n", liverseg_last_error()); return 1; }
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
    liverseg_status status = liverseg_segment(model, &ct, &params, mask, NULL);
    if (status != LIVERSEG_OK) { fprintf(stderr, "%s: %s\n", liverseg_status_name(status), liverseg_last_error()); return 1; }
    FILE *out = fopen(argv[10], "wb");
    if (!out || fwrite(mask, 1, n, out) != n) { fprintf(stderr, "cannot write mask\n"); return 1; }
    fclose(out);
    liverseg_model_free(model);
    free(voxels); free(matrix); free(mask);
    printf("ok %zu\n", params.struct_size);
    return 0;
}
