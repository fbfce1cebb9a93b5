// liverseg.hpp — header-only C++17 RAII wrapper over liverseg.h. Errors throw
// liverseg::Error carrying the status and the library's message.
//
//     liverseg::Model model("liver.safetensors");
//     liverseg::Volume ct{voxels.data(), LIVERSEG_DTYPE_INT16, {512, 512, 129}, {0.57, 0.57, 1.6}, ijk_to_ras};
//     std::vector<uint8_t> mask = model.segment(ct);
//
// A Model is movable, not copyable, and (like the C handle) safe to use from many threads.
#ifndef LIVERSEG_HPP
#define LIVERSEG_HPP

#include <liverseg.h>

#include <array>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace liverseg {

/// A failed liverseg call.
class Error : public std::runtime_error {
public:
    Error(liverseg_status status, const std::string &message) : std::runtime_error(message), status_(status) {}
    /// The liverseg_status of the failed call.
    liverseg_status status() const noexcept { return status_; }

private:
    liverseg_status status_;
};

/// Throws Error with the thread's last message unless status is LIVERSEG_OK.
inline void check(liverseg_status status) {
    if (status != LIVERSEG_OK) throw Error(status, liverseg_last_error());
}

/// A CT volume the caller owns (see liverseg_volume).
struct Volume {
    const void *data = nullptr;
    liverseg_dtype dtype = LIVERSEG_DTYPE_INT16;
    std::array<size_t, 3> dims{};
    std::array<double, 3> spacing{};
    const double *ijk_to_ras = nullptr;  ///< 16 doubles row-major, or nullptr

    liverseg_volume c() const {
        liverseg_volume v{};
        v.data = data;
        v.dtype = dtype;
        for (int i = 0; i < 3; ++i) { v.dims[i] = dims[i]; v.spacing[i] = spacing[i]; }
        v.ijk_to_ras = ijk_to_ras;
        return v;
    }
    size_t voxel_count() const { return dims[0] * dims[1] * dims[2]; }
};

/// Options of Model::segment; the defaults are the library's (liverseg_segment_default_params()).
struct SegmentOptions {
    int n_threads = liverseg_segment_default_params().n_threads;
    size_t max_tile_voxels = liverseg_segment_default_params().max_tile_voxels;
    /// Used when crf is false.
    float threshold = liverseg_segment_default_params().threshold;
    /// Refine with the dense CRF (the model file's CRF parameters unless crf_params is set);
    /// on by default, false thresholds the probability instead.
    bool crf = liverseg_segment_default_params().crf != 0;
    const liverseg_crf_params *crf_params = nullptr;
    /// Bit set of liverseg_postprocess steps applied to the mask.
    unsigned postprocess = liverseg_segment_default_params().postprocess;
    /// Return true to cancel (the call then throws Error with LIVERSEG_CANCELLED).
    std::function<bool(double, liverseg_stage)> progress;
};

/// An immutable loaded model.
class Model {
public:
    explicit Model(const std::string &path) { check(liverseg_model_load_file(path.c_str(), &model_)); }
    Model(const void *data, size_t size) { check(liverseg_model_load_memory(data, size, &model_)); }
    ~Model() { liverseg_model_free(model_); }
    Model(Model &&other) noexcept : model_(std::exchange(other.model_, nullptr)) {}
    Model &operator=(Model &&other) noexcept {
        if (this != &other) { liverseg_model_free(model_); model_ = std::exchange(other.model_, nullptr); }
        return *this;
    }
    Model(const Model &) = delete;
    Model &operator=(const Model &) = delete;

    /// The model's description.
    liverseg_model_info info() const {
        liverseg_model_info i{};
        i.struct_size = sizeof i;
        check(liverseg_model_get_info(model_, &i));
        return i;
    }

    /// The metadata JSON document.
    std::string metadata_json() const { return liverseg_model_metadata_json(model_); }

    /// Segments into caller buffers (mask required, probability may be nullptr).
    void segment(const Volume &volume, uint8_t *mask, float *probability = nullptr,
                 const SegmentOptions &options = {}) const {
        liverseg_segment_params p = liverseg_segment_default_params();
        p.n_threads = options.n_threads;
        p.max_tile_voxels = options.max_tile_voxels;
        p.threshold = options.threshold;
        p.crf = options.crf ? 1 : 0;
        p.crf_params = options.crf_params;
        p.postprocess = options.postprocess;
        if (options.progress) {
            p.progress = [](double f, liverseg_stage s, void *user) -> int {
                auto *fn = static_cast<const std::function<bool(double, liverseg_stage)> *>(user);
                try { return (*fn)(f, s) ? 1 : 0; } catch (...) { return 1; }  // never unwind through C
            };
            p.progress_user_data = const_cast<std::function<bool(double, liverseg_stage)> *>(&options.progress);
        }
        liverseg_volume v = volume.c();
        check(liverseg_segment(model_, &v, &p, mask, probability));
    }

    /// Segments and returns the mask (x fastest, 0/1).
    std::vector<uint8_t> segment(const Volume &volume, const SegmentOptions &options = {}) const {
        std::vector<uint8_t> mask(volume.voxel_count());
        segment(volume, mask.data(), nullptr, options);
        return mask;
    }

    /// The underlying C handle (still owned by this object).
    const liverseg_model *get() const noexcept { return model_; }

private:
    liverseg_model *model_ = nullptr;
};

/// Options of refine_crf: the C parameters (start from liverseg_crf_default_params()) and
/// an optional progress function returning true to cancel.
struct CRFOptions {
    liverseg_crf_params params = liverseg_crf_default_params();
    std::function<bool(double, liverseg_stage)> progress;
};

namespace detail {
/// Calls a std::function progress handler from C; an exception cancels instead of
/// unwinding through C.
inline int relay_progress(double fraction, liverseg_stage stage, void *user) {
    auto *fn = static_cast<const std::function<bool(double, liverseg_stage)> *>(user);
    try { return (*fn)(fraction, stage) ? 1 : 0; } catch (...) { return 1; }
}
}  // namespace detail

/// Refines a liver probability (voxel_count() floats in [0, 1]) on ct's grid into `mask`
/// (voxel_count() bytes, 0/1) with the dense CRF (liverseg_refine_crf).
inline void refine_crf(const Volume &ct, const float *probability, uint8_t *mask, const CRFOptions &options = {}) {
    liverseg_crf_params p = options.params;
    if (options.progress) {
        p.progress = detail::relay_progress;
        p.progress_user_data = const_cast<std::function<bool(double, liverseg_stage)> *>(&options.progress);
    }
    liverseg_volume v = ct.c();
    check(liverseg_refine_crf(&v, probability, &p, mask));
}

/// As above, returning the mask.
inline std::vector<uint8_t> refine_crf(const Volume &ct, const std::vector<float> &probability, const CRFOptions &options = {}) {
    if (probability.size() != ct.voxel_count())
        throw Error(LIVERSEG_INVALID_ARGUMENT, "refine_crf: probability has " + std::to_string(probability.size()) +
                                                   " values but the volume has " + std::to_string(ct.voxel_count()) + " voxels");
    std::vector<uint8_t> mask(ct.voxel_count());
    refine_crf(ct, probability.data(), mask.data(), options);
    return mask;
}

}  // namespace liverseg

#endif  // LIVERSEG_HPP
