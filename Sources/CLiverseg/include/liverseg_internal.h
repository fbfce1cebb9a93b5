// Internal helpers of the C boundary; not installed, not exported (no liverseg_ prefix).
#ifndef LIVERSEG_INTERNAL_H
#define LIVERSEG_INTERNAL_H

/// Stores `message` as this thread's last error (truncated to the buffer, NUL-terminated).
void lvs_set_last_error(const char *message);

/// Clears this thread's last error.
void lvs_clear_last_error(void);

#endif
