import XCTest
@testable import LiversegDICOM
@testable import LiversegSupport

/// `count` axial slices of series `uid`, 2.5 mm apart from z = -100 upwards, named in
/// reverse order of position (so that file order is not slice order).
private func axialSeries(_ uid: String, count: Int, step: Double = 2.5, modality: String = "CT") -> [DICOMSlice] {
    (0..<count).map { k in
        DICOMSlice(
            path: "\(uid)/\(String(format: "%03d", count - k))", seriesUID: uid, modality: modality,
            position: [-200, -150, -100 + step * Double(k)], rows: 4, columns: 6, pixelSpacing: [0.8, 0.7])
    }
}

private func scan(_ slices: [DICOMSlice]) -> DICOMScan {
    DICOMScan(slices: slices, dicomFiles: slices.count, multiFrameFiles: 0)
}

/// The message of a LiversegError thrown by `body`, or a failure.
private func message(_ body: () throws -> Any) -> String {
    do {
        _ = try body()
        XCTFail("no error")
    } catch let error as LiversegError {
        return error.description
    } catch {
        XCTFail("\(error)")
    }
    return ""
}

final class DICOMSeriesTests: XCTestCase {
    func testSlicesAreOrderedAlongTheNormalWithTheRASGeometry() throws {
        let slices = axialSeries("1.2", count: 5).shuffled()
        let (sorted, m) = try stackSlices(slices, name: "s")
        XCTAssertEqual(sorted.map { $0.position[2] }, [-100, -97.5, -95, -92.5, -90])
        // LPS → RAS: x and y negated; i along a row (column spacing 0.7), j along a column (0.8).
        XCTAssertEqual(m, [-0.7, 0, 0, 200, 0, -0.8, 0, 150, 0, 0, 2.5, -100, 0, 0, 0, 1])
    }

    func testSlicesAreOrderedAlongTheirNormalEvenWhenItPointsToTheFeet() throws {
        // A column direction pointing to the patient's front (−y in LPS) makes the normal point
        // to the feet: slices are ordered along the normal, so k runs from head to feet.
        let flipped = (0..<3).map { k in
            DICOMSlice(
                path: "\(k)", seriesUID: "u", position: [0, 0, Double(k) * 2], orientation: [1, 0, 0, 0, -1, 0],
                rows: 2, columns: 2)
        }
        let (sorted, m) = try stackSlices(flipped, name: "s")
        XCTAssertEqual(sorted.map(\.path), ["2", "1", "0"])
        XCTAssertEqual(Array(m[8..<12]), [0, 0, -2, 4])
    }

    func testGapsDuplicatesAndTiltAreRefused() {
        var gap = axialSeries("g", count: 6)
        gap.remove(at: 3)
        let gapMessage = message { try stackSlices(gap, name: "s") }
        XCTAssertTrue(
            gapMessage.contains("not evenly spaced: 5 mm between g/004 and g/002 where most are 2.5 mm apart"), gapMessage)
        var duplicate = axialSeries("d", count: 4)
        duplicate.append(
            DICOMSlice(
                path: "copy", seriesUID: "d", position: duplicate[1].position, rows: 4, columns: 6,
                pixelSpacing: [0.8, 0.7]))
        XCTAssertTrue(message { try stackSlices(duplicate, name: "s") }.contains("same position"))
        let tilted = axialSeries("t", count: 5).enumerated().map { k, slice in
            var slice = slice
            slice.position[1] += 0.5 * Double(k)
            return slice
        }
        XCTAssertTrue(message { try stackSlices(tilted, name: "s") }.contains("gantry tilt"))
        var resized = axialSeries("r", count: 3)
        resized[1].rows = 5
        XCTAssertTrue(message { try stackSlices(resized, name: "s") }.contains("differ in orientation or size"))
        var multiFrame = axialSeries("m", count: 2)
        multiFrame[0].frames = 3
        XCTAssertTrue(message { try stackSlices(multiFrame, name: "s") }.contains("single-frame"))
    }

    func testTheLargestAxialCTSeriesIsChosenWithANote() throws {
        let sagittal = (0..<30).map { k in
            DICOMSlice(
                path: "sag/\(k)", seriesUID: "sag", position: [Double(k), 0, 0], orientation: [0, 1, 0, 0, 0, -1],
                rows: 4, columns: 4)
        }
        let found = scan(
            axialSeries("small", count: 5) + sagittal + axialSeries("large", count: 20)
                + axialSeries("mr", count: 40, modality: "MR"))
        let plan = try planSeries(found, path: "folder", requested: nil)
        XCTAssertEqual(plan.series.uid, "large")
        XCTAssertEqual(plan.slices.count, 20)
        XCTAssertEqual(plan.others.map(\.uid), ["mr", "sag", "small"])
        let note = try XCTUnwrap(plan.note)
        XCTAssertTrue(note.hasPrefix("folder holds 4 series; reading large (CT, 20 slices, axial)"), note)
        XCTAssertTrue(note.contains("sag (CT, 30 slices, sagittal)"), note)
        // --series picks another; a non-axial one is refused; an unknown UID lists the series.
        XCTAssertEqual(try planSeries(found, path: "folder", requested: "small").slices.count, 5)
        XCTAssertNil(try planSeries(found, path: "folder", requested: "small").note)
        XCTAssertTrue(message { try planSeries(found, path: "folder", requested: "sag") }.contains("is sagittal, not axial"))
        XCTAssertTrue(message { try planSeries(found, path: "folder", requested: "9.9") }.contains("no series 9.9"))
        // One series: no note.
        XCTAssertNil(try planSeries(scan(axialSeries("a", count: 3)), path: "f", requested: nil).note)
    }

    func testFoldersWithoutAnAxialCTSeriesOrWithoutSlicesAreRefused() {
        let mr = scan(axialSeries("mr", count: 4, modality: "MR"))
        XCTAssertTrue(message { try planSeries(mr, path: "f", requested: nil) }.contains("no axial CT series"))
        XCTAssertEqual(try planSeries(mr, path: "f", requested: "mr").slices.count, 4)
        XCTAssertTrue(message { try planSeries(DICOMScan(), path: "f", requested: nil) }.contains("f: no DICOM files"))
        let reports = DICOMScan(slices: [], dicomFiles: 2, multiFrameFiles: 0)
        XCTAssertTrue(message { try planSeries(reports, path: "f", requested: nil) }.contains("no image slices"))
        let enhanced = DICOMScan(slices: [], dicomFiles: 1, multiFrameFiles: 1)
        XCTAssertTrue(message { try planSeries(enhanced, path: "f", requested: nil) }.contains("multi-frame"))
    }

    func testAMalformedHeaderStopsOnlyItsOwnSeries() throws {
        var broken = axialSeries("broken", count: 3)
        broken[1] = DICOMSlice(path: "broken/002", seriesUID: "broken", position: [0, 0, 0], rows: 0, columns: 0)
        broken[1].problem = "broken/002: ImagePositionPatient 'a\\b' is not 3 numbers"
        let found = scan(broken + axialSeries("good", count: 4))
        XCTAssertEqual(try planSeries(found, path: "f", requested: nil).series.uid, "good")
        XCTAssertTrue(message { try planSeries(found, path: "f", requested: "broken") }.contains("is not 3 numbers"))
    }

    func testOneSliceTakesItsSpacingFromTheHeader() throws {
        var slice = axialSeries("one", count: 1)[0]
        slice.spacingBetweenSlices = 3
        XCTAssertEqual(try stackSlices([slice], name: "s").ijkToRAS[10], 3)
        slice.spacingBetweenSlices = nil
        slice.sliceThickness = 1.25
        XCTAssertEqual(try stackSlices([slice], name: "s").ijkToRAS[10], 1.25)
    }
}
