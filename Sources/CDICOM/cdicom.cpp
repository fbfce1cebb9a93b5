// GDCM behind the C interface of cdicom.h. GDCM runs in a child process (see the header);
// there, every C++ exception is caught, and the child ends with _exit. No C++ exception
// leaves this file.
#include "cdicom.h"

#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmPixelFormat.h>
#include <gdcmScanner.h>
#include <gdcmTag.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

namespace {

// Returned when even the error message cannot be allocated; never freed.
char outOfMemory[] = "out of memory";

char *errorString(const std::string &message) noexcept {
    char *copy = static_cast<char *>(std::malloc(message.size() + 1));
    if (copy == nullptr) return outOfMemory;
    std::memcpy(copy, message.c_str(), message.size() + 1);
    return copy;
}

char *errorString(const char *message) noexcept {
    try {
        return errorString(std::string(message));
    } catch (...) {
        return outOfMemory;
    }
}

// The tag of each cdicom_attribute, in the enumeration's order.
const std::array<gdcm::Tag, CDICOM_ATTRIBUTE_COUNT> attributeTags = {
    gdcm::Tag(0x0008, 0x0016), gdcm::Tag(0x0008, 0x0060), gdcm::Tag(0x0008, 0x103E), gdcm::Tag(0x0018, 0x0050),
    gdcm::Tag(0x0018, 0x0088), gdcm::Tag(0x0020, 0x000E), gdcm::Tag(0x0020, 0x0011), gdcm::Tag(0x0020, 0x0032),
    gdcm::Tag(0x0020, 0x0037), gdcm::Tag(0x0028, 0x0002), gdcm::Tag(0x0028, 0x0008), gdcm::Tag(0x0028, 0x0010),
    gdcm::Tag(0x0028, 0x0011), gdcm::Tag(0x0028, 0x0030), gdcm::Tag(0x0028, 0x0100), gdcm::Tag(0x0028, 0x1052),
    gdcm::Tag(0x0028, 0x1053),
};

// --- The child process -------------------------------------------------------------------

// How the child process ended: `message` is "" when it exited with status 0, else how it
// ended; `system` is true when it could not run (fork, waitpid), not because of a file.
struct Ending {
    std::string message;
    bool system = false;
};

// How a child that ended with `status` ended: "" for exit status 0.
std::string childEnding(int status) {
    if (WIFEXITED(status)) {
        if (WEXITSTATUS(status) == 0) return "";
        return "GDCM's process exited with status " + std::to_string(WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        const int signal = WTERMSIG(status);
        std::string name = signal == SIGABRT   ? " (SIGABRT: a failed GDCM assertion)"
                           : signal == SIGSEGV ? " (SIGSEGV)"
                           : signal == SIGKILL ? " (SIGKILL: out of memory?)"
                                               : "";
        return "GDCM's process died of signal " + std::to_string(signal) + name;
    }
    return "GDCM's process ended abnormally";
}

// Runs `body` in a child process (stdout and stderr to /dev/null; killed if this process
// dies) and calls `wait(pid)` in this one until the child has ended (it must sleep a little
// when nothing happened). Returns how the child ended, or why it could not start. The child
// calls only GDCM and the C++ library, then _exit.
template <class Body, class Wait>
Ending runInChild(Body body, Wait wait) {
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid < 0) return {std::string("cannot start a process for GDCM: ") + std::strerror(errno), true};
    if (pid == 0) {
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
        const int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (devnull >= 0) {
            dup2(devnull, STDOUT_FILENO);
            dup2(devnull, STDERR_FILENO);
        }
        int code = 0;
        try {
            gdcm::Trace::SetDebug(false);
            gdcm::Trace::SetWarning(false);
            gdcm::Trace::SetError(false);
            body();
        } catch (...) {
            code = 3;
        }
        _exit(code);
    }
    int status = 0;
    for (;;) {
        const pid_t ended = waitpid(pid, &status, WNOHANG);
        if (ended == pid) break;
        if (ended < 0 && errno != EINTR) {
            return {std::string("cannot wait for GDCM's process: ") + std::strerror(errno), true};
        }
        wait();
    }
    return {childEnding(status), false};
}

void sleepBriefly() {
    timespec pause = {0, 20 * 1000 * 1000};
    nanosleep(&pause, nullptr);
}

// Writes all of `bytes` to `fd`; false when the pipe is gone.
bool writeAll(int fd, const std::string &bytes) {
    size_t written = 0;
    while (written < bytes.size()) {
        const ssize_t n = write(fd, bytes.data() + written, bytes.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        written += static_cast<size_t>(n);
    }
    return true;
}

// --- Headers -----------------------------------------------------------------------------

// One file's record in the scan's byte stream: a flag (1: read as DICOM), then per attribute
// a flag (1: present) followed by a 4-byte length and the value.
void appendRecord(std::string &out, const char *path) {
    gdcm::Scanner scanner;
    for (const gdcm::Tag &tag : attributeTags) scanner.AddTag(tag);
    std::vector<std::string> names(1, path);
    bool dicom = false;
    try {
        dicom = scanner.Scan(names) && scanner.IsKey(path);
    } catch (...) {
        dicom = false;
    }
    out.push_back(dicom ? 1 : 0);
    if (!dicom) return;
    const gdcm::Scanner::TagToValue &values = scanner.GetMapping(path);
    for (const gdcm::Tag &tag : attributeTags) {
        auto found = values.find(tag);
        const bool present = found != values.end() && found->second != nullptr;
        out.push_back(present ? 1 : 0);
        if (!present) continue;
        const uint32_t length = static_cast<uint32_t>(std::min<size_t>(std::strlen(found->second), 1u << 20));
        out.append(reinterpret_cast<const char *>(&length), sizeof length);
        out.append(found->second, length);
    }
}

}  // namespace

struct cdicom_scan {
    struct File {
        bool dicom = false;
        std::array<std::string, CDICOM_ATTRIBUTE_COUNT> values;
        std::array<bool, CDICOM_ATTRIBUTE_COUNT> present{};
    };
    std::vector<File> files;
};

namespace {

// Parses the child's records into `scan`; returns how many complete records there were.
size_t parseRecords(const std::string &bytes, size_t count, cdicom_scan &scan) {
    size_t at = 0, parsed = 0;
    auto take = [&](size_t n) {
        if (bytes.size() - at < n) throw std::out_of_range("record");
        const size_t start = at;
        at += n;
        return start;
    };
    try {
        for (; parsed < count; ++parsed) {
            cdicom_scan::File file;
            file.dicom = bytes.at(take(1)) == 1;
            if (file.dicom) {
                for (size_t a = 0; a < CDICOM_ATTRIBUTE_COUNT; ++a) {
                    if (bytes.at(take(1)) != 1) continue;
                    uint32_t length = 0;
                    std::memcpy(&length, bytes.data() + take(sizeof length), sizeof length);
                    file.values[a] = bytes.substr(take(length), length);
                    file.present[a] = true;
                }
            }
            scan.files[parsed] = std::move(file);
        }
    } catch (const std::out_of_range &) {
    }
    return parsed;
}

}  // namespace

extern "C" char *cdicom_scan_files(const char *const *paths, size_t count, cdicom_scan **scan, int *file_error) {
    int ignored = 0;
    if (file_error == nullptr) file_error = &ignored;
    *file_error = 0;
    if (scan == nullptr || (paths == nullptr && count > 0)) return errorString("cdicom_scan_files: null argument");
    *scan = nullptr;
    int pipeEnds[2] = {-1, -1};
    try {
        auto result = std::make_unique<cdicom_scan>();
        result->files.resize(count);
        if (pipe2(pipeEnds, O_CLOEXEC) != 0) {
            return errorString(std::string("cannot create a pipe for GDCM: ") + std::strerror(errno));
        }
        std::string bytes;
        bool readError = false;
        auto drain = [&](int timeout) {
            pollfd ready = {pipeEnds[0], POLLIN, 0};
            if (poll(&ready, 1, timeout) <= 0) return false;
            char chunk[65536];
            const ssize_t n = read(pipeEnds[0], chunk, sizeof chunk);
            if (n > 0) bytes.append(chunk, static_cast<size_t>(n));
            if (n < 0 && errno != EINTR && errno != EAGAIN) readError = true;
            return n > 0;
        };
        const Ending ending = runInChild(
            [&] {
                close(pipeEnds[0]);
                for (size_t i = 0; i < count; ++i) {
                    std::string record;
                    appendRecord(record, paths[i]);
                    if (!writeAll(pipeEnds[1], record)) _exit(4);
                }
            },
            [&] {
                if (!drain(20)) sleepBriefly();
            });
        close(pipeEnds[1]);
        pipeEnds[1] = -1;
        while (!readError && drain(0)) {
        }
        close(pipeEnds[0]);
        pipeEnds[0] = -1;
        const size_t parsed = parseRecords(bytes, count, *result);
        if (ending.system) return errorString(ending.message);
        if (!ending.message.empty() || parsed < count) {
            std::string message = ending.message.empty() ? "GDCM's process ended early" : ending.message;
            if (parsed < count) message += " while reading the header of " + std::string(paths[parsed]);
            *file_error = 1;
            return errorString(message + " (a truncated or malformed DICOM file?)");
        }
        *scan = result.release();
        return nullptr;
    } catch (const std::bad_alloc &) {
        for (int fd : pipeEnds) if (fd >= 0) close(fd);
        return errorString("out of memory while reading DICOM headers");
    } catch (const std::exception &error) {
        for (int fd : pipeEnds) if (fd >= 0) close(fd);
        return errorString(std::string("reading DICOM headers: ") + error.what());
    } catch (...) {
        for (int fd : pipeEnds) if (fd >= 0) close(fd);
        return errorString("reading DICOM headers: unknown C++ exception");
    }
}

extern "C" int cdicom_scan_is_dicom(const cdicom_scan *scan, size_t index) {
    return scan != nullptr && index < scan->files.size() && scan->files[index].dicom ? 1 : 0;
}

extern "C" const char *cdicom_scan_value(const cdicom_scan *scan, size_t index, cdicom_attribute attribute) {
    if (scan == nullptr || index >= scan->files.size() || attribute < 0 || attribute >= CDICOM_ATTRIBUTE_COUNT) {
        return nullptr;
    }
    const auto &file = scan->files[index];
    return file.present[attribute] ? file.values[attribute].c_str() : nullptr;
}

extern "C" void cdicom_scan_free(cdicom_scan *scan) { delete scan; }

// --- Pixels ------------------------------------------------------------------------------

extern "C" void *cdicom_shared_alloc(size_t bytes) {
    if (bytes == 0) bytes = 1;
    void *memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return memory == MAP_FAILED ? nullptr : memory;
}

extern "C" void cdicom_shared_free(void *memory, size_t bytes) {
    if (memory != nullptr) munmap(memory, bytes == 0 ? 1 : bytes);
}

namespace {

constexpr size_t errorSlot = 512;
constexpr int maximumThreads = 256;

// The decoding child's bookkeeping, in memory shared with it.
struct DecodeControl {
    std::atomic<int64_t> next;
    std::atomic<int64_t> done;
    std::atomic<int64_t> current[maximumThreads];  // the file each worker decodes, or -1
};

void copyMessage(char *slot, const std::string &message) {
    const size_t n = std::min(message.size(), errorSlot - 1);
    std::memcpy(slot, message.data(), n);
    slot[n] = 0;
}

// Decodes one file into `buffer`; "" on success, else why not.
std::string decodeFile(const char *path, void *buffer, size_t capacity, cdicom_pixels &info) {
    info = cdicom_pixels{};
    std::strcpy(info.transfer_syntax, "unknown");
    try {
        gdcm::ImageReader reader;
        reader.SetFileName(path);
        if (!reader.Read()) return "GDCM cannot read the file as a DICOM image";
        const gdcm::Image &image = reader.GetImage();
        if (const char *name = gdcm::TransferSyntax::GetTSString(image.GetTransferSyntax())) {
            std::snprintf(info.transfer_syntax, sizeof info.transfer_syntax, "%s", name);
        }
        const unsigned int dimensions = image.GetNumberOfDimensions();
        const unsigned int *extent = image.GetDimensions();
        if (extent == nullptr || dimensions < 2) return "the image has no dimensions";
        const gdcm::PixelFormat &format = image.GetPixelFormat();
        info.columns = extent[0];
        info.rows = extent[1];
        info.frames = dimensions > 2 ? extent[2] : 1;
        info.samples_per_pixel = format.GetSamplesPerPixel();
        info.bits_allocated = format.GetBitsAllocated();
        info.bits_stored = format.GetBitsStored();
        info.pixel_representation = format.GetPixelRepresentation();
        info.length = image.GetBufferLength();
        if (info.length > capacity) {
            return "the decoded pixel data has " + std::to_string(info.length) + " bytes where " + std::to_string(capacity) +
                   " were expected";
        }
        if (!image.GetBuffer(static_cast<char *>(buffer))) {
            return std::string("GDCM cannot decode the pixel data (transfer syntax ") + info.transfer_syntax + ")";
        }
        return "";
    } catch (const std::bad_alloc &) {
        return "out of memory while decoding the pixel data";
    } catch (const std::exception &error) {
        return std::string("decoding the pixel data: ") + error.what();
    } catch (...) {
        return "decoding the pixel data: unknown C++ exception";
    }
}

}  // namespace

extern "C" char *cdicom_read_slices(
    const char *const *paths, size_t count, void *buffer, size_t slice_bytes, int threads, cdicom_pixels *infos,
    char **errors, cdicom_progress progress, void *context, int *file_error) {
    int ignored = 0;
    if (file_error == nullptr) file_error = &ignored;
    *file_error = 0;
    if (count > 0 && (paths == nullptr || buffer == nullptr || infos == nullptr || errors == nullptr)) {
        return errorString("cdicom_read_slices: null argument");
    }
    for (size_t k = 0; k < count; ++k) errors[k] = nullptr;
    if (count == 0) return nullptr;
    const size_t requested = threads < 1 ? 1 : static_cast<size_t>(threads);
    const int workers = static_cast<int>(std::min({requested, count, static_cast<size_t>(maximumThreads)}));
    // Shared with the child: the control block, then one cdicom_pixels and one message per file.
    const size_t sharedBytes = sizeof(DecodeControl) + count * (sizeof(cdicom_pixels) + errorSlot);
    void *shared = cdicom_shared_alloc(sharedBytes);
    if (shared == nullptr) return errorString("out of memory for the DICOM decoding bookkeeping");
    auto *control = new (shared) DecodeControl;
    control->next = 0;
    control->done = 0;
    for (auto &current : control->current) current = -1;
    auto *sharedInfos = reinterpret_cast<cdicom_pixels *>(static_cast<char *>(shared) + sizeof(DecodeControl));
    char *messages = reinterpret_cast<char *>(sharedInfos + count);
    char *result = nullptr;
    try {
        const Ending ending = runInChild(
            [&] {
                auto work = [&](int worker) {
                    for (;;) {
                        const int64_t k = control->next.fetch_add(1);
                        if (k >= static_cast<int64_t>(count)) break;
                        control->current[worker] = k;
                        const std::string message = decodeFile(
                            paths[k], static_cast<char *>(buffer) + k * slice_bytes, slice_bytes, sharedInfos[k]);
                        copyMessage(messages + k * errorSlot, message);
                        control->current[worker] = -1;
                        control->done.fetch_add(1);
                    }
                };
                std::vector<std::thread> pool;
                for (int w = 1; w < workers; ++w) pool.emplace_back(work, w);
                work(0);
                for (auto &thread : pool) thread.join();
            },
            [&] {
                if (progress != nullptr) progress(context, double(control->done.load()) / double(count));
                sleepBriefly();
            });
        if (ending.system) {
            result = errorString(ending.message);
        } else if (!ending.message.empty()) {
            *file_error = 1;
            std::string names;
            for (int w = 0; w < workers; ++w) {
                const int64_t k = control->current[w].load();
                if (k >= 0 && k < static_cast<int64_t>(count)) names += std::string(names.empty() ? "" : ", ") + paths[k];
            }
            result = errorString(
                ending.message + (names.empty() ? "" : " while decoding " + names) + " (a truncated or malformed DICOM file?)");
        } else {
            if (progress != nullptr) progress(context, 1);
            for (size_t k = 0; k < count; ++k) {
                infos[k] = sharedInfos[k];
                const char *message = messages + k * errorSlot;
                if (message[0] != 0) errors[k] = errorString(message);
            }
        }
    } catch (...) {
        result = errorString("out of memory while decoding DICOM files");
    }
    control->~DecodeControl();
    cdicom_shared_free(shared, sharedBytes);
    return result;
}

extern "C" void cdicom_free_string(char *message) {
    if (message != outOfMemory) std::free(message);
}
