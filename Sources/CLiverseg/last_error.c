// Thread-local storage for liverseg_last_error(): C's _Thread_local is the simplest
// portable way to give each host thread its own message buffer.
#include "../../include/liverseg.h"
#include "include/liverseg_internal.h"
#include <stddef.h>
#include <string.h>

_Static_assert(sizeof(lvs_segment_params_0_1) == LIVERSEG_SEGMENT_PARAMS_SIZE_0_1,
               "the 0.1 segment params layout must be the prefix of the current one");
_Static_assert(offsetof(lvs_segment_params_0_1, progress_user_data) ==
                   offsetof(liverseg_segment_params, progress_user_data),
               "the 0.1 segment params layout must be the prefix of the current one");

static _Thread_local char last_error[1024];

#define LVS_STRING(x) #x
#define LVS_EXPANDED_STRING(x) LVS_STRING(x)

const char *lvs_version_string(void) {
    return LVS_EXPANDED_STRING(LIVERSEG_VERSION_MAJOR) "." LVS_EXPANDED_STRING(LIVERSEG_VERSION_MINOR) "."
        LVS_EXPANDED_STRING(LIVERSEG_VERSION_PATCH);
}

void lvs_set_last_error(const char *message) {
    if (message == NULL) message = "";
    strncpy(last_error, message, sizeof last_error - 1);
    last_error[sizeof last_error - 1] = '\0';
}

void lvs_clear_last_error(void) { last_error[0] = '\0'; }

const char *liverseg_last_error(void) { return last_error; }
