import Foundation
import MoEData
import MoEHDF5
@testable import MoERuntime
import MoESpec
import XCTest

/// Which failures are permanent (never retried) and the line a worker prints for them
/// (ARCHITECTURE §6).
final class FailureTests: XCTestCase {
    private func storage(_ code: Int32) -> HDF5Error {
        .system(path: "/r/tasks/train.partial.h5", operation: "writing", code: code)
    }

    func testStorageThatRefusesWritesIsPermanentAndOtherSystemErrorsAreNot() {
        for code in [ENOSPC, EDQUOT, EROFS, EACCES, EPERM] {
            XCTAssertTrue(Failure.isPermanent(storage(code)), "errno \(code)")
        }
        XCTAssertFalse(Failure.isPermanent(storage(EIO)))
        XCTAssertFalse(Failure.isPermanent(HDF5Error.file(path: "x.h5", operation: "open file", message: "truncated file")))
    }

    func testDivergenceBadDataAndLateSpecErrorsArePermanentAWorkerOrGroupDeathIsNot() {
        XCTAssertTrue(Failure.isPermanent(RuntimeError.diverged(task: "train", step: 3, epoch: 0, quantity: "loss", value: .nan,
                                                                 lr: 0.1, gradClip: nil)))
        XCTAssertTrue(Failure.isPermanent(DataError.missingDataset(file: "d.h5", name: "y")))
        XCTAssertTrue(Failure.isPermanent(RuntimeError.missingDomains(path: "d.csv")))
        XCTAssertTrue(Failure.isPermanent(RuntimeError.usage("bad")))
        XCTAssertFalse(Failure.isPermanent(RuntimeError.groupFailed(task: "train", reason: "peer 1 died")))
        XCTAssertFalse(Failure.isPermanent(RuntimeError.io(path: "x", message: "y")))
        XCTAssertFalse(Failure.isPermanent(CancellationError()))
    }

    func testTheLineNamesTaskFileAndCauseAndWhatToDo() {
        XCTAssertEqual(Failure.message(for: storage(ENOSPC), task: "train"),
                       "train: no space left on device while writing /r/tasks/train.partial.h5; free some space, then rerun with --resume to continue")
        XCTAssertEqual(Failure.message(for: storage(EROFS), task: "data"),
                       "data: read-only file system while writing /r/tasks/train.partial.h5; make the file system writable, then rerun with --resume to continue")
        XCTAssertEqual(Failure.message(for: storage(EACCES), task: "data"),
                       "data: permission denied while writing /r/tasks/train.partial.h5; fix the permissions, then rerun with --resume to continue")
        // A line that already starts with the task is not prefixed twice.
        let diverged = RuntimeError.diverged(task: "expert-1", step: 7, epoch: 1, quantity: "gradient norm", value: .infinity,
                                             lr: 0.5, gradClip: 1)
        XCTAssertEqual(Failure.message(for: diverged, task: "expert-1"),
                       "expert-1: the gradient norm became inf at step 7 (epoch 2); the run stopped. Likely causes: a learning rate too "
                       + "high for this model (train.lr: 0.5; gradients are already clipped at train.grad_clip: 1), or NaN or Inf values "
                       + "in the data. Lower train.lr, or check the data")
    }
}
