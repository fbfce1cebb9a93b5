// A C++ consumer through the RAII wrapper; same arguments as segment_raw.c.
#include <liverseg.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

template <typename T>
static std::vector<T> read_all(const char *path, size_t count) {
    std::ifstream in(path, std::ios::binary);
    std::vector<T> v(count);
    if (!in.read(reinterpret_cast<char *>(v.data()), count * sizeof(T))) throw std::runtime_error("cannot read input");
    return v;
}

int main(int argc, char **argv) {
    if (argc != 11) { std::cerr << "usage: segment_raw_cpp MODEL CT NX NY NZ SX SY SZ MATRIX MASK\n"; return 2; }
    try {
        liverseg::Model model(argv[1]);
        liverseg::Volume ct;
        for (int i = 0; i < 3; ++i) {
            ct.dims[i] = std::strtoull(argv[3 + i], nullptr, 10);
            ct.spacing[i] = std::strtod(argv[6 + i], nullptr);
        }
        auto voxels = read_all<int16_t>(argv[2], ct.voxel_count());
        auto matrix = read_all<double>(argv[9], 16);
        ct.data = voxels.data();
        ct.ijk_to_ras = matrix.data();
        int calls = 0;
        liverseg::SegmentOptions options;
        options.progress = [&calls](double, liverseg_stage) { ++calls; return false; };
        std::vector<uint8_t> mask = model.segment(ct, options);
        std::ofstream(argv[10], std::ios::binary).write(reinterpret_cast<const char *>(mask.data()), mask.size());
        // Errors arrive as exceptions with the library's message.
        try {
            liverseg::Model("/nonexistent/model.safetensors");
            return 1;
        } catch (const liverseg::Error &e) {
            if (e.status() != LIVERSEG_IO_ERROR) return 1;
        }
        std::cout << "ok progress-calls " << calls << " channels " << model.info().conv_channels[0] << "\n";
    } catch (const std::exception &e) {
        std::cerr << e.what() << "\n";
        return 1;
    }
    return 0;
}
