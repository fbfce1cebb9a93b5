// zlib (Debian zlib1g-dev): gzip/deflate for .nii.gz, NRRD gzip, MetaImage and PNG.
#include <zlib.h>
