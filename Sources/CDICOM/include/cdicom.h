// A small C interface over GDCM for the `liverseg` command's DICOM input (LiversegDICOM).
// Only the command links it: libliverseg.so does not depend on GDCM.
//
// GDCM runs in a child process (fork): Debian builds it with assertions on, and a truncated
// or malformed file can make it abort(), which no exception handler catches. The child's
// results come back through a pipe (headers) or shared memory (pixels); when it dies, the
// call returns an error naming the file it was reading. In the child every C++ exception is
// caught too, so none crosses this interface, and GDCM's messages on stderr go to
// /dev/null. Error strings are malloc'd; free them with cdicom_free_string.
#ifndef CDICOM_H
#define CDICOM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// The attributes read from every file's header (values as text, as GDCM's Scanner gives
/// them: numbers in decimal, multiple values separated by backslashes).
typedef enum {
    CDICOM_SOP_CLASS_UID,            // (0008,0016)
    CDICOM_MODALITY,                 // (0008,0060)
    CDICOM_SERIES_DESCRIPTION,       // (0008,103E)
    CDICOM_SLICE_THICKNESS,          // (0018,0050)
    CDICOM_SPACING_BETWEEN_SLICES,   // (0018,0088)
    CDICOM_SERIES_INSTANCE_UID,      // (0020,000E)
    CDICOM_SERIES_NUMBER,            // (0020,0011)
    CDICOM_IMAGE_POSITION_PATIENT,   // (0020,0032)
    CDICOM_IMAGE_ORIENTATION_PATIENT,// (0020,0037)
    CDICOM_SAMPLES_PER_PIXEL,        // (0028,0002)
    CDICOM_NUMBER_OF_FRAMES,         // (0028,0008)
    CDICOM_ROWS,                     // (0028,0010)
    CDICOM_COLUMNS,                  // (0028,0011)
    CDICOM_PIXEL_SPACING,            // (0028,0030)
    CDICOM_BITS_ALLOCATED,           // (0028,0100)
    CDICOM_RESCALE_INTERCEPT,        // (0028,1052)
    CDICOM_RESCALE_SLOPE,            // (0028,1053)
    CDICOM_ATTRIBUTE_COUNT
} cdicom_attribute;

/// The headers of a list of files.
typedef struct cdicom_scan cdicom_scan;

/// Reads the headers of `count` files (stopping before their pixel data) with GDCM's
/// Scanner, in a child process. On success returns NULL and sets *scan (free it with
/// cdicom_scan_free); else an error string, with *file_error set to 1 when a file is to
/// blame (GDCM's process died reading it; the message names it) and 0 when the system is
/// (no process, no pipe, no memory). A file GDCM cannot read as DICOM is not an error:
/// cdicom_scan_is_dicom says 0 for it.
char *cdicom_scan_files(const char *const *paths, size_t count, cdicom_scan **scan, int *file_error);

/// Whether file `index` (in the order given to cdicom_scan_files) was read as DICOM.
int cdicom_scan_is_dicom(const cdicom_scan *scan, size_t index);

/// The value of `attribute` in file `index`, or NULL when the file lacks it. Valid until
/// cdicom_scan_free.
const char *cdicom_scan_value(const cdicom_scan *scan, size_t index, cdicom_attribute attribute);

void cdicom_scan_free(cdicom_scan *scan);

/// The decoded pixel data of one file, as GDCM describes it.
typedef struct {
    uint32_t columns, rows, frames;
    uint16_t samples_per_pixel, bits_allocated, bits_stored, pixel_representation;
    /// Bytes of decoded pixel data (columns × rows × frames × samples × bits_allocated / 8).
    uint64_t length;
    /// The file's transfer syntax, for messages.
    char transfer_syntax[64];
} cdicom_pixels;

/// Memory shared with the child process that decodes slices: `bytes` bytes (zero-filled,
/// committed as written), or NULL. Free it with cdicom_shared_free.
void *cdicom_shared_alloc(size_t bytes);
void cdicom_shared_free(void *memory, size_t bytes);

/// Called with the fraction of files decoded, on the calling thread, about 50 times a second.
typedef void (*cdicom_progress)(void *context, double fraction);

/// Decodes the pixel data of `count` files (any transfer syntax this GDCM build decodes)
/// on up to `threads` threads in a child process: file k goes to `buffer` (from
/// cdicom_shared_alloc) at k × slice_bytes, host byte order, row by row. infos[k] describes
/// what GDCM decoded; errors[k] is NULL, or the reason file k was not decoded (its decoded
/// length would exceed slice_bytes, or GDCM failed; free it with cdicom_free_string).
/// Returns NULL when every file was attempted, else an error string: *file_error 1 when the
/// child process died decoding (the message names the files it was decoding), 0 when it
/// could not run.
char *cdicom_read_slices(
    const char *const *paths, size_t count, void *buffer, size_t slice_bytes, int threads, cdicom_pixels *infos,
    char **errors, cdicom_progress progress, void *context, int *file_error);

/// Frees an error string returned by this interface.
void cdicom_free_string(char *message);

#ifdef __cplusplus
}
#endif

#endif
