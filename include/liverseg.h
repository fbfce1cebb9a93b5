/*
 * liverseg.h — liver segmentation in abdominal CT with the 3D deeply supervised network
 * (3D DSN, Dou et al., MICCAI 2016).
 *
 * This header is the whole public API of libliverseg and its documentation.
 *
 * Quick start
 * -----------
 *     liverseg_model *model = NULL;
 *     if (liverseg_model_load_file("liver.safetensors", &model) != LIVERSEG_OK) {
 *         fprintf(stderr, "%s\n", liverseg_last_error());
 *         return 1;
 *     }
 *     liverseg_volume ct = {0};
 *     ct.data = voxels;                 // int16 HU, x fastest
 *     ct.dtype = LIVERSEG_DTYPE_INT16;
 *     ct.dims[0] = 512; ct.dims[1] = 512; ct.dims[2] = 129;
 *     ct.spacing[0] = 0.57; ct.spacing[1] = 0.57; ct.spacing[2] = 1.6;
 *     ct.ijk_to_ras = matrix;           // 16 doubles, row-major; NULL = already canonical
 *     liverseg_segment_params params = liverseg_segment_default_params();
 *     uint8_t *mask = malloc(512 * 512 * 129);
 *     liverseg_status status = liverseg_segment(model, &ct, &params, mask, NULL);
 *     liverseg_model_free(model);
 *
 * Conventions (apply to every function below)
 * -------------------------------------------
 * - Errors: every fallible function returns a liverseg_status. On failure it also stores a
 *   one-line message naming what was wrong, readable with liverseg_last_error() on the same
 *   thread. Nothing the library does on bad input crashes or aborts the host process.
 * - Ownership: the caller owns every buffer it passes in and every output buffer; the
 *   library never keeps a pointer to them after the call returns. Objects the library
 *   creates (liverseg_model) are freed with their *_free function. Strings returned as
 *   `const char *` are owned by the library; see each function for how long they live.
 * - Threads: a loaded model is immutable. Any number of threads may call liverseg_segment
 *   (and the other functions taking `const liverseg_model *`) on the same model at the
 *   same time. liverseg_model_free must not race with other uses of that model.
 *   Each call runs its own worker threads (see liverseg_segment_params.n_threads).
 * - OpenBLAS: its thread count is process-wide. The library runs its matrix products from
 *   its own worker threads, so while a call computes it sets the count to 1; the host's
 *   count (openblas_get_num_threads) is saved when the first of concurrent liverseg calls
 *   starts and restored when the last ends. So the host's setting is unchanged after every
 *   call; OpenBLAS work the host runs on other threads *during* a liverseg call runs
 *   single-threaded, and a count the host sets during one is replaced by the saved one.
 * - Volumes: voxel (i, j, k) of a volume with dims (nx, ny, nz) is at index
 *   i + nx * (j + ny * k) (x fastest, as NIfTI, NRRD, MetaImage and VTK store images).
 * - Callbacks run on the thread that made the call, never concurrently with each other.
 */
#ifndef LIVERSEG_H
#define LIVERSEG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------
 * Versions
 * ------------------------------------------------------------------------------------- */

/* The one place the version is written: the Makefile, the Swift layer and the tests read it
 * from here. */
#define LIVERSEG_VERSION_MAJOR 0
#define LIVERSEG_VERSION_MINOR 5
#define LIVERSEG_VERSION_PATCH 0
/** Bumped when a change breaks programs built against an older header (a released
 *  function signature, enum value or struct field changes meaning). Additions — new
 *  functions, enum values, fields appended to a struct versioned by struct_size — keep it:
 *  programs built against 0.1 run unchanged with this library. */
#define LIVERSEG_ABI_VERSION 0

/** The library's version, "MAJOR.MINOR.PATCH". Static storage; never free it. */
const char *liverseg_version(void);

/** The library's LIVERSEG_ABI_VERSION. A program built against this header runs with any
 *  library of the same ABI version whose version is at least this header's. */
int liverseg_abi_version(void);

/* ---------------------------------------------------------------------------------------
 * Status codes and errors. Values never change meaning once released.
 * ------------------------------------------------------------------------------------- */

typedef enum liverseg_status {
    LIVERSEG_OK = 0,
    /** A NULL pointer, a zero or overflowing size, an unknown enum value, a non-finite or
     *  out-of-range parameter, or a struct_size the library does not know. */
    LIVERSEG_INVALID_ARGUMENT = 1,
    /** A file could not be opened, read or written. */
    LIVERSEG_IO_ERROR = 2,
    /** A model file is malformed, truncated, or does not match its declared architecture. */
    LIVERSEG_INVALID_MODEL = 3,
    /** The input is valid but asks for something this build does not support
     *  (e.g. a newer model format version). */
    LIVERSEG_UNSUPPORTED = 4,
    /** Memory for the computation could not be allocated. */
    LIVERSEG_OUT_OF_MEMORY = 5,
    /** The progress callback returned non-zero; outputs are unspecified. */
    LIVERSEG_CANCELLED = 6,
    /** A bug in liverseg; the message says where. Please report it. */
    LIVERSEG_INTERNAL_ERROR = 7
} liverseg_status;

/**
 * The message of the last failed call on this thread, or "" if none failed yet.
 * Thread-local, owned by the library; valid until the next liverseg call on this thread.
 */
const char *liverseg_last_error(void);

/** A short constant name for a status ("LIVERSEG_OK", ...); "unknown status" otherwise. */
const char *liverseg_status_name(liverseg_status status);

/* ---------------------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------------------- */

typedef enum liverseg_log_level {
    LIVERSEG_LOG_DEBUG = 0,
    LIVERSEG_LOG_INFO = 1,
    LIVERSEG_LOG_WARNING = 2,
    LIVERSEG_LOG_ERROR = 3
} liverseg_log_level;

/** Receives one message (no trailing newline). It may be called from any thread that
 *  calls into the library, so it must be thread-safe. */
typedef void (*liverseg_log_callback)(liverseg_log_level level, const char *message,
                                      void *user_data);

/** Installs a process-wide log callback (NULL: no logging, the default). Messages below
 *  min_level are dropped. Safe to call from any thread. */
void liverseg_set_log_callback(liverseg_log_callback callback, liverseg_log_level min_level,
                               void *user_data);

/* ---------------------------------------------------------------------------------------
 * Models
 *
 * A model file is a safetensors file (see docs/model-format.md): float32 tensors named
 * conv1.weight ... plus a "liverseg" JSON document in __metadata__ giving the format
 * version, the architecture, the pre-processing, the fusion weights and CRF defaults.
 * ------------------------------------------------------------------------------------- */

/** An opaque loaded model; immutable after loading, shareable between threads. */
typedef struct liverseg_model liverseg_model;

/** Loads and validates a model file. On success *out_model owns a new model, to be freed
 *  with liverseg_model_free. On failure *out_model is set to NULL. */
liverseg_status liverseg_model_load_file(const char *path, liverseg_model **out_model);

/** As liverseg_model_load_file, from `size` bytes at `data` (copied; the caller may free
 *  them when the call returns). */
liverseg_status liverseg_model_load_memory(const void *data, size_t size,
                                           liverseg_model **out_model);

/** Frees a model. NULL is fine. */
void liverseg_model_free(liverseg_model *model);

/** What a model expects and produces. Filled by liverseg_model_get_info.
 *
 *  A model file holds one network (format version 1) or an ensemble of 2 to 8 (format
 *  version 2; `liverseg ensemble` writes one), each with its own grid spacing and
 *  architecture; liverseg_segment averages their fused liver probabilities on the CT's
 *  grid. The fields below from conv_channels to n_parameters describe the first network,
 *  which is also the one liverseg_model_grid_dims, liverseg_preprocess,
 *  liverseg_network_forward and liverseg_network_loss_gradient run; the metadata JSON
 *  ("networks") describes every network. The bundled model is an ensemble of two. */
typedef struct liverseg_model_info {
    size_t struct_size;           /**< set to sizeof(liverseg_model_info) before the call
                                       (LIVERSEG_MODEL_INFO_SIZE_0_1 is accepted too) */
    int format_version;           /**< the file's model format version: 1 or 2 */
    int conv_channels[6];         /**< output channels of conv layers 1,2,4,5,7,8 */
    int conv_kernel[6][3];        /**< their kernel sizes, (x, y, z) */
    int main_deconv_channels;     /**< channels between the two main up-sampling layers */
    int branch2_deconv_channels;  /**< channels between the two branch-2 up-sampling layers */
    int n_classes;                /**< 2: background, liver */
    double spacing[3];            /**< model grid spacing in mm, (x, y, z) */
    char orientation[4];          /**< canonical axis codes, e.g. "RAS" (NUL-terminated) */
    double hu_window[2];          /**< HU values are clipped to [lo, hi] ... */
    double intensity_mean;        /**< ... then normalised as (hu - mean) / std */
    double intensity_std;
    double fusion_tau[2];         /**< eq. 4 weights of branch 1 and branch 2 */
    size_t n_parameters;          /**< number of float32 weights */
    /* ---- since 0.5 ---- */
    int n_networks;               /**< networks in the model, 1...8 */
} liverseg_model_info;

/** struct_size of liverseg_model_info in 0.1, the first release (no n_networks). */
#define LIVERSEG_MODEL_INFO_SIZE_0_1 offsetof(liverseg_model_info, n_networks)

/** Describes a model. `info->struct_size` must be set by the caller. */
liverseg_status liverseg_model_get_info(const liverseg_model *model, liverseg_model_info *info);

/**
 * The model's "liverseg" metadata JSON document, NUL-terminated. Owned by the model;
 * valid until liverseg_model_free. NULL if model is NULL.
 */
const char *liverseg_model_metadata_json(const liverseg_model *model);

/* ---------------------------------------------------------------------------------------
 * Volumes
 * ------------------------------------------------------------------------------------- */

/**
 * The element type of voxels, host byte order: of a liverseg_volume and of an image file
 * (liverseg_image_info.dtype), one enum for both, so that an image read with
 * liverseg_image_read can be segmented as `ct.dtype = info.dtype`. INT16, INT32 and
 * FLOAT32 keep their 0.1 values; the others were added in 0.2 (0.1's image reader had
 * its own numbering, see liverseg_image_info.voxel_type_0_1).
 */
typedef enum liverseg_dtype {
    LIVERSEG_DTYPE_INT16 = 1,
    LIVERSEG_DTYPE_INT32 = 2,
    LIVERSEG_DTYPE_FLOAT32 = 3,
    /* ---- since 0.2 ---- */
    LIVERSEG_DTYPE_UINT8 = 4,
    LIVERSEG_DTYPE_INT8 = 5,
    LIVERSEG_DTYPE_UINT16 = 6,
    LIVERSEG_DTYPE_UINT32 = 7,
    LIVERSEG_DTYPE_UINT64 = 8,
    LIVERSEG_DTYPE_INT64 = 9,
    LIVERSEG_DTYPE_FLOAT64 = 10
} liverseg_dtype;

/**
 * A CT volume the caller owns. Voxel values are Hounsfield units, finite: a NaN or ±Inf
 * voxel is LIVERSEG_INVALID_ARGUMENT, naming its flat index. INT16, INT32 and FLOAT32
 * voxels are read in place; the other types are first converted to float32 (a copy of
 * 4 bytes per voxel), where a float64 value beyond float32's range counts as infinite.
 *
 * Layout: fixed, 0.1's, and it stays so. Unlike the params structs it has no struct_size:
 * 0.1's begins with `data`, and a library cannot tell a size field from a pointer there,
 * nor read a field beyond 0.1's end without overrunning a 0.1 program's struct. A later
 * release that needs more per-volume fields adds them in a separate struct versioned by
 * struct_size (reached through a versioned params struct), leaving this one unchanged.
 */
typedef struct liverseg_volume {
    const void *data;          /**< dims[0]*dims[1]*dims[2] voxels of `dtype`, x fastest */
    liverseg_dtype dtype;      /**< any liverseg_dtype */
    size_t dims[3];            /**< (nx, ny, nz), each >= 1 */
    double spacing[3];         /**< voxel size in mm along i, j, k; finite and > 0 */
    /**
     * Optional 4x4 row-major matrix mapping voxel indices (i, j, k, 1) to RAS millimetres,
     * as NIfTI's sform and 3D Slicer's IJKToRAS give it. Its 16 values must be finite,
     * its last row (0, 0, 0, 1) and its column norms equal `spacing` (to 1e-3 relative);
     * a singular 3x3 part (|det| <= 1e-6 * spacing product) is an error. The volume is
     * reoriented to the model's canonical orientation by permuting and flipping axes: the
     * nearest RAS axis of each column is used, so an oblique or sheared (non-orthogonal,
     * e.g. gantry-tilted) volume is accepted and not resampled along its obliquity; two
     * columns nearest to the same RAS axis (e.g. 45 degrees oblique) are an error. Every
     * error here is LIVERSEG_INVALID_ARGUMENT naming the problem. NULL: the volume's axes
     * already follow the model's orientation.
     */
    const double *ijk_to_ras;
} liverseg_volume;

/* ---------------------------------------------------------------------------------------
 * Segmentation
 * ------------------------------------------------------------------------------------- */

/** Stages reported to a progress callback. */
typedef enum liverseg_stage {
    LIVERSEG_STAGE_PREPROCESS = 0,  /**< reorienting, resampling, normalising */
    LIVERSEG_STAGE_NETWORK = 1,     /**< running the network tile by tile */
    LIVERSEG_STAGE_POSTPROCESS = 2, /**< fusing, resampling back, thresholding */
    LIVERSEG_STAGE_CRF = 3          /**< the dense CRF (liverseg_refine_crf, or segment's crf) */
} liverseg_stage;

/**
 * Called as work progresses, with the overall fraction done in [0, 1] (never decreasing)
 * and the current stage. Return 0 to continue; any other value cancels the call, which
 * then returns LIVERSEG_CANCELLED soon after. Calls come between rounds of work sized to
 * take about 20 ms each (inside network layers, resampling, post-processing and the
 * CRF), so at least every ~100 ms on current machines; the fraction may repeat.
 */
typedef int (*liverseg_progress_callback)(double fraction, liverseg_stage stage,
                                          void *user_data);

struct liverseg_crf_params; /* see "CRF refinement" below */

/**
 * Clean-up steps applied to the mask after thresholding or the CRF (a bit set). The liver
 * is one solid organ: what the network labels apart from its largest piece (spleen, heart,
 * bowel) is wrong, and dark tumours or vessels enclosed by liver belong to it.
 */
typedef enum liverseg_postprocess {
    LIVERSEG_POSTPROCESS_NONE = 0,
    /** Keep only the largest 6-connected component of liver voxels. */
    LIVERSEG_POSTPROCESS_LARGEST_COMPONENT = 1,
    /** Fill background regions that do not reach the volume's border (6-connected, 3D). */
    LIVERSEG_POSTPROCESS_FILL_HOLES_3D = 2,
    /** Fill the holes of each axial slice (slices across the input axis that runs head to
     *  foot; 4-connected background not reaching the slice's border). */
    LIVERSEG_POSTPROCESS_FILL_HOLES_SLICES = 4,
    /** All of the above, in that order: the default. */
    LIVERSEG_POSTPROCESS_ALL = 7
} liverseg_postprocess;

/**
 * Options of liverseg_segment. The struct grows at its end between releases: start from
 * liverseg_segment_params_init (or the inline liverseg_segment_default_params below), which
 * records the size this program was compiled with in struct_size. The library accepts every
 * struct_size from the first release's (LIVERSEG_SEGMENT_PARAMS_SIZE_0_1) up to its own and
 * gives fields beyond the caller's struct_size their defaults, so a program built against
 * an older header keeps working with a newer library.
 */
typedef struct liverseg_segment_params {
    size_t struct_size;                  /**< the size of the caller's struct; set by
                                              liverseg_segment_params_init, keep it */
    int n_threads;                       /**< worker threads; 0 = all cores */
    /** Largest network tile, in model-grid voxels (halo included); 0 = default (8 Mi).
     *  Bounds memory: a tile needs about 40 bytes per voxel per 8 channels. */
    size_t max_tile_voxels;
    float threshold;                     /**< fused probability >= threshold is liver;
                                              default 0.5, must be in (0, 1); with crf the
                                              CRF's own 0.5 decision replaces it */
    /** Non-zero: refine the mask with the dense CRF after the network (paper §2.3), as
     *  liverseg_refine_crf on the fused probability; 0: threshold the probability.
     *  Default 1 since 0.4 (0 before): over the bundled model recipe's leave-one-out folds
     *  the CRF raised the held-out Dice by more than the rule for a default asks
     *  (docs/training.md). It costs time: IRCADb-17 (512×512×119), 2 threads, 0.7 s
     *  without, 6–7 s with. With uncertain_only set
     *  and LIVERSEG_POSTPROCESS_LARGEST_COMPONENT in postprocess, the CRF runs only in the
     *  bounding box of the largest component of the probability thresholded at 0.5, grown
     *  by max(2·theta_alpha_mm, uncertain_margin_mm), and the mask is 0 outside that box:
     *  liver found elsewhere would be removed by that step anyway (IRCADb-17: 2× faster;
     *  the masks agree with the CRF everywhere to Dice ≥ 0.997, docs/crf.md). Memory: the
     *  CRF takes about 80 bytes per voxel of that box, so it grows with the liver, not the
     *  scan (peak RSS of the liverseg command: IRCADb-17 1.4 GB with, 0.27 GB without; a
     *  512×512×600 scan 2.2 GB with, 0.82 GB without). */
    int crf;
    /** The CRF's parameters when crf is set; NULL: the model file's "crf" section (the
     *  library's defaults for keys it lacks), with this call's n_threads. The CRF params'
     *  own progress callback is ignored: progress goes to this struct's callback. */
    const struct liverseg_crf_params *crf_params;
    liverseg_progress_callback progress; /**< may be NULL */
    void *progress_user_data;
    /* ---- since 0.2 ---- */
    /** Bit set of liverseg_postprocess applied to the mask (after the CRF when crf is set);
     *  default LIVERSEG_POSTPROCESS_ALL; LIVERSEG_POSTPROCESS_NONE gives the raw
     *  thresholded (or CRF) mask. Unknown bits are LIVERSEG_ERROR_INVALID_ARGUMENT. */
    unsigned int postprocess;
} liverseg_segment_params;

/** struct_size of liverseg_segment_params in 0.1, the first release (no postprocess). */
#define LIVERSEG_SEGMENT_PARAMS_SIZE_0_1 offsetof(liverseg_segment_params, postprocess)

/**
 * Fills the first `struct_size` bytes of *params with the defaults and sets
 * params->struct_size = struct_size. Pass sizeof(liverseg_segment_params) of the header you
 * compile with; a library newer than that header never writes beyond it.
 * Returns LIVERSEG_ERROR_INVALID_ARGUMENT for NULL or a size outside
 * [LIVERSEG_SEGMENT_PARAMS_SIZE_0_1, the library's sizeof].
 */
liverseg_status liverseg_segment_params_init(liverseg_segment_params *params, size_t struct_size);

/**
 * Default parameters, by value; always start from these (or from
 * liverseg_segment_params_init). Inline, so that the size is this header's: the library's
 * exported symbol of the same name is 0.1's and fills the 0.1 layout, for programs
 * compiled against 0.1.
 */
static inline liverseg_segment_params liverseg_segment_default_params(void) {
    liverseg_segment_params params;
    liverseg_segment_params_init(&params, sizeof params);
    return params;
}

/**
 * Segments the liver in `volume`.
 *
 * Steps: reorient to the model's orientation, resample (trilinear) to the model spacing,
 * clip and normalise HU, run the network over the whole volume in overlapping tiles,
 * fuse the main and branch probabilities with the model's tau (paper eq. 4), resample the
 * fused probability back to the input grid and orientation, and threshold it — or, with
 * params->crf, refine it with the dense CRF. An ensemble model (liverseg_model_info's
 * n_networks > 1) runs these steps up to the resampling back once per network, each on its
 * own grid, and thresholds or refines the mean of the networks' probabilities.
 *
 * out_mask: dims[0]*dims[1]*dims[2] bytes, written with 0 (background) or 1 (liver) on the
 *           input grid. Required.
 * out_probability: the same number of floats for the fused liver probability (an
 *           ensemble's: the mean over its networks), or NULL.
 * params: NULL means liverseg_segment_default_params().
 *
 * Deterministic: the same model, volume and params give bit-identical outputs, whatever
 * n_threads is. Thread-safe for a shared model.
 */
liverseg_status liverseg_segment(const liverseg_model *model, const liverseg_volume *volume,
                                 const liverseg_segment_params *params, uint8_t *out_mask,
                                 float *out_probability);

/**
 * The extents (x, y, z) of the model grid — an ensemble's first network's — that `volume`
 * is resampled onto: the volume reoriented to the model's orientation, each extent
 * max(1, round(n * spacing / model spacing)). Every function taking a model and a volume
 * refuses (INVALID_ARGUMENT) a model grid with an extent above
 * LIVERSEG_MAX_MODEL_GRID_EXTENT or more than LIVERSEG_MAX_MODEL_GRID_VOXELS voxels.
 */
/** The largest model-grid extent along one axis, in voxels. */
#define LIVERSEG_MAX_MODEL_GRID_EXTENT 4096
/** The most voxels a model grid may have (2^30: 4 GiB of float32 network input). */
#define LIVERSEG_MAX_MODEL_GRID_VOXELS ((size_t)1 << 30)

liverseg_status liverseg_model_grid_dims(const liverseg_model *model, const liverseg_volume *volume,
                                         size_t out_dims[3]);

/**
 * The network's input for `volume`: reoriented, resampled (trilinear on HU, voxel centres
 * aligned, clamped at the borders) onto the model grid, clipped and normalised — exactly
 * what liverseg_segment feeds the network, before padding to multiples of 4.
 * out: `out_count` floats, which must equal the product of liverseg_model_grid_dims.
 */
liverseg_status liverseg_preprocess(const liverseg_model *model, const liverseg_volume *volume, int n_threads,
                                    float *out, size_t out_count);

/**
 * Runs the network alone on a pre-processed volume already on the model grid: `input` is
 * nx*ny*nz normalised intensities (x fastest); nx, ny, nz must be multiples of 4. Writes
 * the liver probability (softmax class 1) of the main output and of the two deep-
 * supervision branches, each nx*ny*nz floats; any of the three outputs may be NULL.
 * No tiling: memory grows with the volume. Meant for checking a model against another
 * framework and for research; liverseg_segment is the normal entry point.
 * Memory: this function and liverseg_network_loss_gradient keep the model's freed working
 * memory (up to 1 GiB; about 0.25 GB for a 160×160×72 input of the paper network) for the
 * next call on the same shapes, which then runs without fresh page faults (20 % faster on
 * 2 threads); liverseg_model_free releases it. liverseg_segment keeps none.
 */
liverseg_status liverseg_network_forward(const liverseg_model *model, const float *input,
                                         const size_t dims[3], int n_threads,
                                         float *out_main, float *out_branch1,
                                         float *out_branch2);

/**
 * The training objective of the paper's eq. 3 (without weight decay) for one input, and
 * its gradient: loss = CE(main) + eta1·CE(branch1) + eta2·CE(branch2), each a mean
 * cross-entropy over voxels against `labels` (dims[0]*dims[1]*dims[2] class indices, 0 =
 * background, 1 = liver). `input` as for liverseg_network_forward.
 * out_losses: 4 doubles (total, main, branch1, branch2). Required.
 * out_gradient: liverseg_model_info.n_parameters floats, the derivative of the total for
 * every tensor in the model file's order (docs/model-format.md) and layout; may be NULL.
 * For training from other languages and for checking gradients against other frameworks.
 */
liverseg_status liverseg_network_loss_gradient(const liverseg_model *model, const float *input,
                                               const size_t dims[3], const uint8_t *labels,
                                               double eta1, double eta2, int n_threads,
                                               double out_losses[4], float *out_gradient);

/* ---- Image files and metrics ---------------------------------------------------------
 *
 * Reading and writing the image files of the field, and the SLiver07 evaluation measures.
 * Formats, chosen by the path's extension: NIfTI-1 (.nii, .nii.gz), NRRD (.nrrd; .nhdr with
 * a detached .raw.gz data file), MetaImage (.mha; .mhd with a detached .raw data file).
 * Readers take every integer and float voxel type of 8 to 64 bits, either byte order, raw
 * or gzip/zlib-compressed data. Writers store the voxels in their own type and the
 * geometry exactly (NIfTI: sform = the matrix, exact to float32), and write atomically: a
 * failed write leaves no file under the output name. Every function in this section is
 * thread-safe (no shared state). See docs/image-files-and-evaluation.md.
 * ------------------------------------------------------------------------------------- */

/** The grid, geometry and voxel type of an image file. Versioned by struct_size like the
 *  params structs: set it to sizeof(liverseg_image_info); a program built against 0.1's
 *  header passes LIVERSEG_IMAGE_INFO_SIZE_0_1 and gets 0.1's behaviour. */
typedef struct liverseg_image_info {
    size_t struct_size;             /**< set to sizeof(liverseg_image_info) before the call */
    /** The voxel type in 0.1's numbering (1 uint8, 2 int8, 3 uint16, 4 int16, 5 uint32,
     *  6 int32, 7 uint64, 8 int64, 9 float32, 10 float64), which differs from
     *  liverseg_dtype's: kept, and filled by reads, for programs built against 0.1, and
     *  the type writes take from a 0.1-sized struct. Use `dtype`. */
    int voxel_type_0_1;
    size_t dims[3];                 /**< (nx, ny, nz), each >= 1; x fastest in memory */
    double spacing[3];              /**< voxel size in mm: the column norms of ijk_to_ras
                                         (filled by reads; ignored by writes) */
    double ijk_to_ras[16];          /**< row-major 4x4 voxel index -> RAS mm matrix (NIfTI
                                         sform convention; LPS files are converted) */
    double scl_slope;               /**< intensity = stored value * scl_slope + scl_inter */
    double scl_inter;               /**< (NIfTI scaling; 1 and 0 for NRRD and MetaImage) */
    /* ---- since 0.2 ---- */
    liverseg_dtype dtype;           /**< element type of the voxels */
} liverseg_image_info;

/** struct_size of liverseg_image_info in 0.1, the first release (no dtype). */
#define LIVERSEG_IMAGE_INFO_SIZE_0_1 offsetof(liverseg_image_info, dtype)

/**
 * Reads an image file. On success `info` describes it and *out_data points to its voxels:
 * dims[0]*dims[1]*dims[2] elements of info->dtype, x fastest, host byte order, unscaled.
 * The buffer is allocated by the library; free it with liverseg_free. On failure
 * *out_data is NULL and the message names the file and the offending header field.
 * NIfTI geometry: the sform when sform_code > 0, else the qform, else nibabel's fallback.
 * Limits: only regular files are read (a FIFO or a device, also as a detached data file,
 * is LIVERSEG_IO_ERROR), of at most 8 GiB; compressed data may inflate to exactly the
 * size its header describes (NIfTI: vox_offset + the voxels), more is
 * LIVERSEG_INVALID_ARGUMENT, and never beyond 8 GiB.
 */
liverseg_status liverseg_image_read(const char *path, liverseg_image_info *info, void **out_data);

/**
 * Writes `data` (laid out as liverseg_image_read returns it) to `path` in the format its
 * extension names, with the geometry `info->ijk_to_ras` (whose 3x3 part must be invertible
 * and last row 0 0 0 1). scl_slope must be finite and non-zero; NRRD and MetaImage have no
 * scaling, so a scaled image is written to them as float intensities. NIfTI-1 holds
 * extents up to 32767: a larger image is LIVERSEG_UNSUPPORTED there (use NRRD or MetaImage).
 */
liverseg_status liverseg_image_write(const char *path, const void *data, const liverseg_image_info *info);

/** Frees a buffer the library allocated (liverseg_image_read's voxels). NULL is fine. */
void liverseg_free(void *buffer);

/**
 * Agreement of a segmentation A with a reference B (SLiver07, Heimann et al. 2009).
 * Surface distances are in mm, symmetric: from each border voxel of A to the nearest
 * border voxel of B and from each border voxel of B to the nearest of A, pooled.
 * Empty masks: both empty gives Dice 1 and all errors 0; one empty gives Dice 0, VOE 100,
 * VD -100 (A empty) or +inf (B empty), surface distances +inf, and score 0 where infinite.
 */
typedef struct liverseg_metrics {
    size_t struct_size;        /**< set to sizeof(liverseg_metrics) before the call */
    double dice;               /**< 2|A n B| / (|A| + |B|) */
    double voe;                /**< volumetric overlap error, 100 (1 - |A n B| / |A u B|), % */
    double vd;                 /**< signed relative volume difference 100 (|A| - |B|) / |B|, % */
    double avg_d;              /**< average symmetric surface distance, mm */
    double rms_d;              /**< root mean square symmetric surface distance, mm */
    double max_d;              /**< maximum symmetric surface distance (Hausdorff), mm */
    double hd95;               /**< 95th percentile of the pooled distances (MedPy's hd95;
                                    linear interpolation as numpy.percentile), mm */
    double mean_distance_a_to_b; /**< mean distance from A's border to B's alone (MedPy asd), mm */
    double mean_distance_b_to_a; /**< mean distance from B's border to A's alone, mm */
    size_t voxels_a;           /**< |A| */
    size_t voxels_b;           /**< |B| */
    size_t border_voxels_a;    /**< border voxels of A */
    size_t border_voxels_b;    /**< border voxels of B */
    double score_voe;          /**< SLiver07 scores max(0, 100 - 25 m / m_ref), m_ref = VOE 6.4 %, */
    double score_vd;           /**< |VD| 4.7 %, */
    double score_avg_d;        /**< AvgD 1 mm, */
    double score_rms_d;        /**< RMSD 1.8 mm, */
    double score_max_d;        /**< MaxD 19 mm; */
    double score_total;        /**< the mean of the five scores */
} liverseg_metrics;

/**
 * Compares two masks on one grid. segmentation, reference: dims[0]*dims[1]*dims[2] bytes,
 * x fastest, non-zero = object. spacing: voxel size in mm (finite, > 0). connectivity:
 * neighbours that make an object voxel a border voxel when one of them is background:
 * 6, 18 or 26; 0 means 18, as the official SLiver07 program (neighbours beyond the grid
 * count as background). n_threads: 0 = all cores; results do not depend on it.
 * `out_metrics->struct_size` must be set by the caller.
 */
liverseg_status liverseg_evaluate(const uint8_t *segmentation, const uint8_t *reference,
                                  const size_t dims[3], const double spacing[3], int connectivity,
                                  int n_threads, liverseg_metrics *out_metrics);

/**
 * What a mask holds on its CT's grid: the figures `liverseg segment --statistics` writes.
 * An empty mask has voxels 0, NaN HU statistics and -1 voxel indices / NaN mm boxes.
 */
typedef struct liverseg_mask_statistics {
    size_t struct_size;        /**< set to sizeof(liverseg_mask_statistics) before the call */
    size_t voxels;             /**< non-zero mask voxels */
    double volume_ml;          /**< their volume, ml */
    size_t components;         /**< 6-connected components of the mask */
    double hu_mean;            /**< mean of the CT's values inside the mask, HU */
    double hu_sd;              /**< their standard deviation (population, divided by voxels) */
    double hu_median;          /**< their median (the mean of the middle two for an even count) */
    int64_t min_voxel[3];      /**< the smallest (i, j, k) of a mask voxel */
    int64_t max_voxel[3];      /**< the largest (i, j, k) of a mask voxel */
    double extent_mm[3];       /**< (max_voxel - min_voxel + 1) * spacing along i, j, k */
    double ras_min_mm[3];      /**< the RAS box (x, y, z) of the voxel centres at the index */
    double ras_max_mm[3];      /**< box's corners, through ijk_to_ras (NULL: spacing, origin 0) */
} liverseg_mask_statistics;

/**
 * (Since 0.3.) Measures a mask on a CT: mask holds ct->dims[0]*dims[1]*dims[2] bytes, x fastest,
 * non-zero = inside. HU are the CT's values as liverseg_segment reads them. The volume is
 * checked as for liverseg_segment. `out->struct_size` must be set by the caller.
 */
liverseg_status liverseg_measure_mask(const liverseg_volume *ct, const uint8_t *mask,
                                      liverseg_mask_statistics *out);

/* ---- CRF refinement ----
 *
 * The fully connected CRF of the paper's §2.3 (Krähenbühl & Koltun 2011), refining a
 * liver probability into a mask with contours that follow the CT's grey values:
 *
 *   E(y) = Σ_i −log p̂(y_i) + Σ_{i,j} [y_i ≠ y_j] ·
 *          ( mu1 · exp(−|s_i − s_j|²/2θα² − |I_i − I_j|²/2θβ²) + mu2 · exp(−|s_i − s_j|²/2θγ²) )
 *
 * with s the voxel position in mm (spacing applied) and I the grey value in HU. It is
 * minimised approximately by mean-field iterations. The bilateral kernel's Gaussian
 * filtering uses a permutohedral lattice (float32 features, no quantisation of HU; ≈1 %
 * normalised error at θ ≈ 1 voxel, < 0.3 % from 3 voxels); the spatial kernel is exact
 * (separable convolution on the voxel grid, truncated at 4θ). p̂ is clamped to
 * [1e-5, 1 − 1e-5] first, so every unary is finite. The message sums over j include
 * j = i, as pydensecrf's do (with Potts compatibility this leaves E(y) unchanged).
 * A voxel is liver when its final mean-field marginal Q(liver) ≥ 0.5.
 * ---------------------------------------------------------------------------------------- */

/** Where the CRF runs. VOLUME3D is the default: on real network outputs (leave-one-out
 *  fold models on IRCADb, 6 case/model pairs) it gave the lower VOE on all 6 (by 0.9–3.2
 *  points) and the lower AvgD on 4, at 4–8 times SLICE2D's time (IRCADb volumes: 11–22 s
 *  against 2–3 s on 2 busy cores). SLICE2D is the paper's choice and the fast one. */
typedef enum liverseg_crf_mode {
    /** Each slice across the axis nearest to superior–inferior (taken from ijk_to_ras;
     *  the third axis when it is NULL) on its own, as the paper does; slices run in
     *  parallel, each on one thread. */
    LIVERSEG_CRF_SLICE2D = 0,
    /** One CRF over the whole volume (or its uncertain box) with 3-D positions in mm. */
    LIVERSEG_CRF_VOLUME3D = 1
} liverseg_crf_mode;

/** How each kernel's messages are normalised by its row sums D_i = Σ_j k(i, j). */
typedef enum liverseg_crf_normalisation {
    /** D^-1/2 K D^-1/2 Q (pydensecrf's default). */
    LIVERSEG_CRF_NORMALISE_SYMMETRIC = 0,
    /** D^-1 K Q: every message a weighted average, as in Krähenbühl & Koltun (2011). */
    LIVERSEG_CRF_NORMALISE_AFTER = 1
} liverseg_crf_normalisation;

/** Options of the CRF. Versioned like liverseg_segment_params: start from
 *  liverseg_crf_params_init (or the inline liverseg_crf_default_params). */
typedef struct liverseg_crf_params {
    size_t struct_size;              /**< the size of the caller's struct; set by
                                          liverseg_crf_params_init, keep it */
    liverseg_crf_mode mode;          /**< default LIVERSEG_CRF_VOLUME3D */
    int n_iterations;                /**< mean-field iterations, 0...10000; 0 gives the
                                          thresholded probability. Default 5 */
    /* The weights and bandwidths: finite; a weight of 0 drops its kernel. Defaults from a
     * grid search on IRCADb with degraded manual masks (tools/crf_search.py); re-tune them
     * for a trained model's output. */
    double mu1;                      /**< bilateral (appearance) kernel weight, >= 0; default 10 */
    double mu2;                      /**< spatial (smoothness) kernel weight, >= 0; default 3 */
    double theta_alpha_mm;           /**< bilateral position bandwidth, mm, > 0; default 12 */
    double theta_beta_hu;            /**< bilateral grey-value bandwidth, HU, > 0; default 15 */
    double theta_gamma_mm;           /**< spatial position bandwidth, mm, > 0; default 1 */
    liverseg_crf_normalisation normalisation; /**< default SYMMETRIC */
    /** Nonzero (the default): run the CRF only inside the bounding box — per slice in
     *  SLICE2D mode — of the voxels whose probability lies in (uncertain_probability,
     *  1 − uncertain_probability), grown by uncertain_margin_mm on every side; every other
     *  voxel gets the thresholded probability (p ≥ 0.5). A slice with no uncertain voxel
     *  costs nothing. Zero: the CRF covers every voxel. */
    int uncertain_only;
    double uncertain_probability;    /**< in [0, 0.5); default 0.01 */
    double uncertain_margin_mm;      /**< >= 0; default 10 */
    int n_threads;                   /**< worker threads, 0...4096; 0 = all cores */
    /** Called on the calling thread with stage LIVERSEG_STAGE_CRF as batches of slices
     *  (or iterations, in VOLUME3D mode) complete, and in between about every 20 ms of
     *  work (lattice build, filterings), repeating the fraction; returning non-zero
     *  cancels. May be NULL. */
    liverseg_progress_callback progress;
    void *progress_user_data;
} liverseg_crf_params;

/** struct_size of liverseg_crf_params in 0.1, the first release (unchanged since). */
#define LIVERSEG_CRF_PARAMS_SIZE_0_1 sizeof(liverseg_crf_params)

/**
 * Fills the first `struct_size` bytes of *params with the defaults and sets
 * params->struct_size = struct_size (pass sizeof(liverseg_crf_params)).
 * LIVERSEG_ERROR_INVALID_ARGUMENT for NULL or a size this library does not know.
 */
liverseg_status liverseg_crf_params_init(liverseg_crf_params *params, size_t struct_size);

/** Default CRF parameters, by value, in this header's layout; always start from these. */
static inline liverseg_crf_params liverseg_crf_default_params(void) {
    liverseg_crf_params params;
    liverseg_crf_params_init(&params, sizeof params);
    return params;
}

/**
 * Refines a liver probability on `ct`'s own grid into a mask with the CRF above.
 *
 * ct: the CT in HU (any liverseg_dtype); its spacing gives positions in mm and its
 *     ijk_to_ras (may be NULL) picks the slice axis. Validated as by liverseg_segment:
 *     a NaN or ±Inf voxel is an error.
 * probability: dims[0]*dims[1]*dims[2] floats in [0, 1] (x fastest), e.g. the
 *     out_probability of liverseg_segment. NaN or values outside [0, 1] are errors.
 * params: NULL means liverseg_crf_default_params().
 * out_mask: dims[0]*dims[1]*dims[2] bytes, written with 0 or 1. Required. Unspecified
 *     when the call fails.
 *
 * Errors: LIVERSEG_INVALID_ARGUMENT (NULL pointers, bad volume, a parameter out of
 * range — the message names it —, bandwidths so small against the data's extent that
 * lattice coordinates would overflow), LIVERSEG_OUT_OF_MEMORY, LIVERSEG_CANCELLED.
 * Thread-safe: calls share no state. Deterministic: the same inputs and params give the
 * same mask whatever n_threads is.
 */
liverseg_status liverseg_refine_crf(const liverseg_volume *ct, const float *probability,
                                    const liverseg_crf_params *params, uint8_t *out_mask);

#ifdef __cplusplus
}
#endif

#endif /* LIVERSEG_H */
