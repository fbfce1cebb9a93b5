/// Stages reported to progress handlers.
public enum SegmentationStage: Int, Sendable {
    case preprocess = 0, network = 1, postprocess = 2, crf = 3
}

/// Receives (fraction done in [0, 1], stage); returns false to cancel.
public typealias ProgressHandler = (Double, SegmentationStage) -> Bool
