/* Every C API path a host takes, for valgrind and the sanitizers (tools/sanitizers.sh):
 *   lifecycle MODEL IMAGE_DIR
 * load -> info -> segment (with probability, and cancelled) -> CRF -> evaluate -> image
 * write/read -> free, then the error paths: NULL pointers, a missing and a malformed model,
 * bad volumes and params, a bad image path, a stale model pointer. Exits 0 when every call
 * returned the status expected. */
#include <liverseg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

static void expect(liverseg_status got, liverseg_status want, const char *what) {
    if (got != want) {
        fprintf(stderr, "%s: %s, expected %s (%s)\n", what, liverseg_status_name(got), liverseg_status_name(want),
                liverseg_last_error());
        ++failures;
    }
}

static int cancel_at_network(double fraction, liverseg_stage stage, void *user_data) {
    (void)fraction; (void)user_data;
    return stage == LIVERSEG_STAGE_NETWORK;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s MODEL IMAGE_DIR\n", argv[0]); return 2; }
    enum { NX = 24, NY = 20, NZ = 12, N = NX * NY * NZ };
    int16_t *voxels = malloc(N * sizeof *voxels);
    uint8_t *mask = malloc(N), *reference = malloc(N);
    float *probability = malloc(N * sizeof *probability);
    for (int i = 0; i < N; ++i) {
        int x = i % NX, y = i / NX % NY, z = i / (NX * NY);
        int inside = (x - 12) * (x - 12) + (y - 10) * (y - 10) + 4 * (z - 6) * (z - 6) < 50;
        voxels[i] = inside ? 60 : -900;
        reference[i] = (uint8_t)inside;
    }

    liverseg_model *model = NULL;
    expect(liverseg_model_load_file(argv[1], &model), LIVERSEG_OK, "load");
    liverseg_model_info info;
    info.struct_size = sizeof info;
    expect(liverseg_model_get_info(model, &info), LIVERSEG_OK, "info");
    const double matrix[16] = {-4, 0, 0, 10, 0, -4, 0, 20, 0, 0, 4, -30, 0, 0, 0, 1};
    liverseg_volume ct = {0};
    ct.data = voxels;
    ct.dtype = LIVERSEG_DTYPE_INT16;
    ct.dims[0] = NX; ct.dims[1] = NY; ct.dims[2] = NZ;
    ct.spacing[0] = ct.spacing[1] = ct.spacing[2] = 4;
    ct.ijk_to_ras = matrix;
    liverseg_segment_params params = liverseg_segment_default_params();
    params.n_threads = 2;
    expect(liverseg_segment(model, &ct, &params, mask, probability), LIVERSEG_OK, "segment");
    params.crf = 1;
    expect(liverseg_segment(model, &ct, &params, mask, NULL), LIVERSEG_OK, "segment with CRF");
    params.crf = 0;
    params.progress = cancel_at_network;
    expect(liverseg_segment(model, &ct, &params, mask, NULL), LIVERSEG_CANCELLED, "cancelled segment");
    params.progress = NULL;

    liverseg_crf_params crf = liverseg_crf_default_params();
    crf.n_threads = 2;
    expect(liverseg_refine_crf(&ct, probability, &crf, mask), LIVERSEG_OK, "CRF volume3d");
    crf.mode = LIVERSEG_CRF_SLICE2D;
    expect(liverseg_refine_crf(&ct, probability, &crf, mask), LIVERSEG_OK, "CRF slice2d");

    liverseg_metrics metrics;
    metrics.struct_size = sizeof metrics;
    const size_t dims[3] = {NX, NY, NZ};
    const double spacing[3] = {4, 4, 4};
    expect(liverseg_evaluate(mask, reference, dims, spacing, 0, 2, &metrics), LIVERSEG_OK, "evaluate");

    char path[4096];
    liverseg_image_info image = {0};
    image.struct_size = sizeof image;
    image.dtype = LIVERSEG_DTYPE_UINT8;
    memcpy(image.dims, dims, sizeof dims);
    memcpy(image.ijk_to_ras, matrix, sizeof matrix);
    image.scl_slope = 1;
    const char *names[] = {"m.nii.gz", "m.nrrd", "m.nhdr", "m.mha", "m.mhd"};
    for (size_t i = 0; i < sizeof names / sizeof *names; ++i) {
        snprintf(path, sizeof path, "%s/%s", argv[2], names[i]);
        expect(liverseg_image_write(path, mask, &image), LIVERSEG_OK, "image write");
        liverseg_image_info read = {0};
        read.struct_size = sizeof read;
        void *data = NULL;
        expect(liverseg_image_read(path, &read, &data), LIVERSEG_OK, "image read");
        liverseg_free(data);
    }

    /* Error paths. */
    liverseg_model *none = NULL;
    expect(liverseg_model_load_file(NULL, &none), LIVERSEG_INVALID_ARGUMENT, "load NULL path");
    snprintf(path, sizeof path, "%s/missing.safetensors", argv[2]);
    expect(liverseg_model_load_file(path, &none), LIVERSEG_IO_ERROR, "load missing");
    expect(liverseg_model_load_memory("12345678garbage", 15, &none), LIVERSEG_INVALID_MODEL, "load garbage");
    expect(liverseg_segment(NULL, &ct, &params, mask, NULL), LIVERSEG_INVALID_ARGUMENT, "segment NULL model");
    expect(liverseg_segment(model, NULL, &params, mask, NULL), LIVERSEG_INVALID_ARGUMENT, "segment NULL volume");
    liverseg_volume bad = ct;
    bad.dims[1] = 0;
    expect(liverseg_segment(model, &bad, &params, mask, NULL), LIVERSEG_INVALID_ARGUMENT, "segment zero dim");
    bad = ct;
    bad.spacing[0] = NAN;
    expect(liverseg_segment(model, &bad, &params, mask, NULL), LIVERSEG_INVALID_ARGUMENT, "segment NaN spacing");
    bad = ct;
    bad.dtype = (liverseg_dtype)99;
    expect(liverseg_segment(model, &bad, &params, mask, NULL), LIVERSEG_INVALID_ARGUMENT, "segment bad dtype");
    liverseg_segment_params bad_params = params;
    bad_params.struct_size = 3;
    expect(liverseg_segment(model, &ct, &bad_params, mask, NULL), LIVERSEG_INVALID_ARGUMENT, "segment struct_size");
    crf.mu1 = -1;
    expect(liverseg_refine_crf(&ct, probability, &crf, mask), LIVERSEG_INVALID_ARGUMENT, "CRF bad mu1");
    probability[5] = NAN;
    crf.mu1 = 10;
    expect(liverseg_refine_crf(&ct, probability, &crf, mask), LIVERSEG_INVALID_ARGUMENT, "CRF NaN probability");
    expect(liverseg_evaluate(mask, reference, dims, spacing, 7, 2, &metrics), LIVERSEG_INVALID_ARGUMENT, "evaluate connectivity");
    void *data = NULL;
    liverseg_image_info read = {0};
    read.struct_size = sizeof read;
    snprintf(path, sizeof path, "%s/none.nii.gz", argv[2]);
    expect(liverseg_image_read(path, &read, &data), LIVERSEG_IO_ERROR, "image read missing");

    liverseg_model_free(model);
    expect(liverseg_model_get_info(model, &info), LIVERSEG_INVALID_ARGUMENT, "stale model");
    liverseg_model_free(NULL);
    free(voxels); free(mask); free(reference); free(probability);
    if (failures) { fprintf(stderr, "%d unexpected statuses\n", failures); return 1; }
    printf("ok\n");
    return 0;
}
