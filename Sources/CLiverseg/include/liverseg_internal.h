// Internal helpers of the C boundary; not installed, not exported (no liverseg_ prefix).
#ifndef LIVERSEG_INTERNAL_H
#define LIVERSEG_INTERNAL_H

#include "../../../include/liverseg.h"

/// liverseg_segment_params as 0.1 released it, returned by 0.1's exported
/// liverseg_segment_default_params (last_error.c checks it is the current layout's prefix).
typedef struct lvs_segment_params_0_1 {
    size_t struct_size;
    int n_threads;
    size_t max_tile_voxels;
    float threshold;
    int crf;
    const struct liverseg_crf_params *crf_params;
    liverseg_progress_callback progress;
    void *progress_user_data;
} lvs_segment_params_0_1;

/// Stores `message` as this thread's last error (truncated to the buffer, NUL-terminated).
void lvs_set_last_error(const char *message);

/// "MAJOR.MINOR.PATCH" from the header's version macros, in static storage: the one
/// formatting of the version for liverseg_version() and the command line.
const char *lvs_version_string(void);

/// Clears this thread's last error.
void lvs_clear_last_error(void);

#endif
