#include "vtkLiverSegmentationLogic.h"

#include <liverseg.h>

#include <vtkCommand.h>
#include <vtkImageData.h>
#include <vtkMatrix4x4.h>
#include <vtkObjectFactory.h>
#include <vtkType.h>

#include <cmath>

vtkStandardNewMacro(vtkLiverSegmentationLogic);

namespace
{
/// The liverseg voxel type of a VTK scalar type; false for types liverseg does not take.
bool DTypeOfScalarType(int scalarType, liverseg_dtype& dtype)
{
  switch (scalarType)
  {
    case VTK_SHORT: dtype = LIVERSEG_DTYPE_INT16; return true; // what Slicer reads most CTs as
    case VTK_UNSIGNED_SHORT: dtype = LIVERSEG_DTYPE_UINT16; return true;
    case VTK_INT: dtype = LIVERSEG_DTYPE_INT32; return true;
    case VTK_UNSIGNED_INT: dtype = LIVERSEG_DTYPE_UINT32; return true;
    case VTK_SIGNED_CHAR: dtype = LIVERSEG_DTYPE_INT8; return true;
    case VTK_UNSIGNED_CHAR: dtype = LIVERSEG_DTYPE_UINT8; return true;
    case VTK_LONG_LONG: dtype = LIVERSEG_DTYPE_INT64; return true;
    case VTK_UNSIGNED_LONG_LONG: dtype = LIVERSEG_DTYPE_UINT64; return true;
    case VTK_FLOAT: dtype = LIVERSEG_DTYPE_FLOAT32; return true;
    case VTK_DOUBLE: dtype = LIVERSEG_DTYPE_FLOAT64; return true;
    default: return false; // VTK_CHAR's signedness is the platform's; VTK_LONG's width too
  }
}
}

vtkLiverSegmentationLogic::vtkLiverSegmentationLogic()
  : UseCRF(liverseg_segment_default_params().crf != 0)
{
}

vtkLiverSegmentationLogic::~vtkLiverSegmentationLogic()
{
  liverseg_model_free(this->Model);
}

void vtkLiverSegmentationLogic::PrintSelf(ostream& os, vtkIndent indent)
{
  this->Superclass::PrintSelf(os, indent);
  os << indent << "Model: " << (this->Model ? "loaded" : "none") << "\n";
  os << indent << "UseCRF: " << this->UseCRF << "\n";
  os << indent << "NumberOfThreads: " << this->NumberOfThreads << "\n";
}

bool vtkLiverSegmentationLogic::LoadModel(const char* path)
{
  liverseg_model* model = nullptr;
  if (!path || liverseg_model_load_file(path, &model) != LIVERSEG_OK)
  {
    this->LastError = path ? liverseg_last_error() : "no model path given";
    return false;
  }
  liverseg_model_free(this->Model);
  this->Model = model;
  this->LastError.clear();
  return true;
}

int vtkLiverSegmentationLogic::ReportProgress(double fraction, int, void* self)
{
  auto* logic = static_cast<vtkLiverSegmentationLogic*>(self);
  logic->InvokeEvent(vtkCommand::ProgressEvent, &fraction);
  return logic->CancelRequested ? 1 : 0;
}

vtkSmartPointer<vtkImageData> vtkLiverSegmentationLogic::Fail(const std::string& reason)
{
  this->LastError = reason;
  return nullptr;
}

vtkSmartPointer<vtkImageData> vtkLiverSegmentationLogic::Segment(vtkImageData* ct, vtkMatrix4x4* ijkToRAS)
{
  this->CancelRequested = false;
  if (!this->Model)
  {
    return this->Fail("no model loaded: call LoadModel first");
  }
  if (!ct || !ijkToRAS || !ct->GetScalarPointer())
  {
    return this->Fail("no image data or no IJK to RAS matrix");
  }
  if (ct->GetNumberOfScalarComponents() != 1)
  {
    return this->Fail("a CT volume has one scalar component");
  }
  int extent[6];
  ct->GetExtent(extent);
  // The matrix maps index (0, 0, 0) to the first voxel in memory only when the extent starts at 0.
  if (extent[0] != 0 || extent[2] != 0 || extent[4] != 0)
  {
    return this->Fail("the image data's extent must start at 0, as a volume node's does");
  }
  liverseg_volume volume = {};
  if (!DTypeOfScalarType(ct->GetScalarType(), volume.dtype))
  {
    return this->Fail(std::string("scalar type ") + ct->GetScalarTypeAsString() + " is not supported");
  }
  // vtkImageData stores x fastest, then y, then z: liverseg's layout, so the scalars are passed in place.
  int dims[3];
  ct->GetDimensions(dims);
  double matrix[16];
  for (int row = 0; row < 4; ++row)
  {
    for (int column = 0; column < 4; ++column)
    {
      matrix[row * 4 + column] = ijkToRAS->GetElement(row, column);
    }
  }
  volume.data = ct->GetScalarPointer();
  for (int axis = 0; axis < 3; ++axis)
  {
    volume.dims[axis] = static_cast<size_t>(dims[axis]);
    // The IJK->RAS matrix carries the spacing: its column norms.
    volume.spacing[axis] = std::sqrt(matrix[axis] * matrix[axis] + matrix[4 + axis] * matrix[4 + axis] +
                                     matrix[8 + axis] * matrix[8 + axis]);
  }
  volume.ijk_to_ras = matrix; // Slicer's RAS is liverseg's: no axis flip

  vtkSmartPointer<vtkImageData> labelMap = vtkSmartPointer<vtkImageData>::New();
  labelMap->CopyStructure(ct);
  labelMap->AllocateScalars(VTK_UNSIGNED_CHAR, 1);

  liverseg_segment_params params = liverseg_segment_default_params();
  params.n_threads = this->NumberOfThreads;
  params.crf = this->UseCRF ? 1 : 0;
  params.progress = [](double fraction, liverseg_stage stage, void* self)
  { return ReportProgress(fraction, static_cast<int>(stage), self); };
  params.progress_user_data = this;
  if (liverseg_segment(this->Model, &volume, &params, static_cast<uint8_t*>(labelMap->GetScalarPointer()), nullptr) !=
    LIVERSEG_OK)
  {
    return this->Fail(liverseg_last_error());
  }
  this->LastError.clear();
  return labelMap;
}
