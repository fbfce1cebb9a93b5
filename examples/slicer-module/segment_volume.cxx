// Runs the logic as Slicer would, without Slicer: a raw int16 CT becomes a VTK_SHORT
// vtkImageData (spacing 1, origin 0, as a volume node's image data) and its IJK->RAS matrix
// a vtkMatrix4x4; the label map is written back as raw bytes.
//   segment_volume MODEL CT.raw NX NY NZ MATRIX.bin LABELMAP.raw [--crf | --no-crf] [--cancel]
// MATRIX.bin: 16 little-endian doubles, row-major. --cancel cancels at the first progress event.
#include "vtkLiverSegmentationLogic.h"

#include <vtkCallbackCommand.h>
#include <vtkCommand.h>
#include <vtkImageData.h>
#include <vtkMatrix4x4.h>
#include <vtkNew.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

namespace
{
struct ProgressSeen
{
  int events = 0;
  bool onCallingThread = true;
  std::thread::id caller = std::this_thread::get_id();
  bool cancel = false;
  vtkLiverSegmentationLogic* logic = nullptr;
};

void OnProgress(vtkObject*, unsigned long, void* clientData, void* callData)
{
  auto* seen = static_cast<ProgressSeen*>(clientData);
  ++seen->events;
  seen->onCallingThread = seen->onCallingThread && std::this_thread::get_id() == seen->caller;
  const double fraction = *static_cast<double*>(callData);
  if (fraction < 0 || fraction > 1)
  {
    seen->onCallingThread = false; // reported as a failure below
  }
  if (seen->cancel)
  {
    seen->logic->RequestCancel();
  }
}

bool ReadFile(const char* path, void* into, size_t bytes)
{
  std::ifstream in(path, std::ios::binary);
  return static_cast<bool>(in.read(static_cast<char*>(into), static_cast<std::streamsize>(bytes)));
}
}

int main(int argc, char** argv)
{
  if (argc < 8)
  {
    std::cerr << "usage: segment_volume MODEL CT.raw NX NY NZ MATRIX.bin LABELMAP.raw [--crf | --no-crf] [--cancel]\n";
    return 2;
  }
  vtkNew<vtkLiverSegmentationLogic> logic;
  ProgressSeen seen;
  seen.logic = logic;
  for (int i = 8; i < argc; ++i)
  {
    if (std::strcmp(argv[i], "--crf") == 0 || std::strcmp(argv[i], "--no-crf") == 0)
      logic->SetUseCRF(std::strcmp(argv[i], "--crf") == 0);
    seen.cancel = seen.cancel || std::strcmp(argv[i], "--cancel") == 0;
  }
  if (!logic->LoadModel(argv[1]))
  {
    std::cerr << logic->GetLastError() << "\n";
    return 1;
  }
  vtkNew<vtkImageData> ct;
  ct->SetDimensions(std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5]));
  ct->AllocateScalars(VTK_SHORT, 1);
  const size_t voxels = static_cast<size_t>(ct->GetNumberOfPoints());
  double elements[16];
  if (!ReadFile(argv[2], ct->GetScalarPointer(), voxels * sizeof(short)) || !ReadFile(argv[6], elements, sizeof elements))
  {
    std::cerr << "cannot read the CT or the matrix\n";
    return 1;
  }
  vtkNew<vtkMatrix4x4> ijkToRAS;
  ijkToRAS->DeepCopy(elements);

  vtkNew<vtkCallbackCommand> progress;
  progress->SetCallback(OnProgress);
  progress->SetClientData(&seen);
  logic->AddObserver(vtkCommand::ProgressEvent, progress);

  vtkSmartPointer<vtkImageData> labelMap = logic->Segment(ct, ijkToRAS);
  if (!labelMap)
  {
    std::cout << "failed: " << logic->GetLastError() << "\n";
    return 3;
  }
  int dims[3];
  labelMap->GetDimensions(dims);
  std::ofstream(argv[7], std::ios::binary)
    .write(static_cast<const char*>(labelMap->GetScalarPointer()), static_cast<std::streamsize>(voxels));
  std::cout << "ok scalars " << labelMap->GetScalarTypeAsString() << " dims " << dims[0] << " " << dims[1] << " "
            << dims[2] << " progress-events " << seen.events << " on-calling-thread "
            << (seen.onCallingThread ? "yes" : "no") << "\n";
  return 0;
}
