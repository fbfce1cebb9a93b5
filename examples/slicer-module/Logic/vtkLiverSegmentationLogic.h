// The computation of a 3D Slicer "LiverSegmentation" module's logic: a CT volume as Slicer
// holds it (vtkImageData scalars + the node's IJK->RAS matrix) in, a liver label map on the
// same grid out, through libliverseg's C API (liverseg.h). It needs VTK only, so it builds
// and is tested outside Slicer; the module's vtkSlicerLiverSegmentationLogic holds one (see
// README.md).
#ifndef vtkLiverSegmentationLogic_h
#define vtkLiverSegmentationLogic_h

#include <vtkObject.h>
#include <vtkSmartPointer.h>

#include <atomic>
#include <string>

class vtkImageData;
class vtkMatrix4x4;
struct liverseg_model;

class vtkLiverSegmentationLogic : public vtkObject
{
public:
  static vtkLiverSegmentationLogic* New();
  vtkTypeMacro(vtkLiverSegmentationLogic, vtkObject);
  void PrintSelf(ostream& os, vtkIndent indent) override;

  /// Loads a liverseg model file, replacing any loaded one. Load once: every Segment call
  /// reuses it. False on failure, with the reason in GetLastError().
  bool LoadModel(const char* path);
  bool HasModel() const { return this->Model != nullptr; }

  /// Refine masks with the dense CRF (slower, closer to the liver's border); the library's
  /// default (on) unless set.
  vtkSetMacro(UseCRF, bool);
  vtkGetMacro(UseCRF, bool);
  vtkBooleanMacro(UseCRF, bool);

  /// Threads for one segmentation; 0 (default) = all cores.
  vtkSetMacro(NumberOfThreads, int);
  vtkGetMacro(NumberOfThreads, int);

  /// Segments `ct`, the image data of a scalar volume node (one component, HU, any integer
  /// or float scalar type; extent starting at 0), whose geometry is `ijkToRAS` as
  /// vtkMRMLVolumeNode::GetIJKToRASMatrix gives it (spacing, directions and origin; the
  /// image data's own spacing and origin are not used, as in Slicer where they are 1 and 0).
  /// Returns a new VTK_UNSIGNED_CHAR image with the structure of `ct` (0 background, 1
  /// liver), or nullptr with the reason in GetLastError(). While it runs, observers get
  /// vtkCommand::ProgressEvent with a double* fraction, on the calling thread.
  vtkSmartPointer<vtkImageData> Segment(vtkImageData* ct, vtkMatrix4x4* ijkToRAS);

  /// Asks a running Segment to stop (it then returns nullptr); safe from any thread.
  void RequestCancel() { this->CancelRequested = true; }

  /// Why the last LoadModel or Segment failed ("" after a success).
  const char* GetLastError() const { return this->LastError.c_str(); }

protected:
  vtkLiverSegmentationLogic();
  ~vtkLiverSegmentationLogic() override;

private:
  vtkLiverSegmentationLogic(const vtkLiverSegmentationLogic&) = delete;
  void operator=(const vtkLiverSegmentationLogic&) = delete;

  static int ReportProgress(double fraction, int stage, void* self);
  vtkSmartPointer<vtkImageData> Fail(const std::string& reason);

  liverseg_model* Model = nullptr;
  bool UseCRF;
  int NumberOfThreads = 0;
  std::atomic<bool> CancelRequested{ false };
  std::string LastError;
};

#endif
