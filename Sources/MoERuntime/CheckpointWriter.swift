import Dispatch
import Foundation
import MoEHDF5

/// Puts checkpoint files on the disk on a thread of its own, so training goes on while the file
/// is written, `fsync`ed and renamed (ARCHITECTURE §5.2: visible only complete).
///
/// Why: a checkpoint's bytes take a few milliseconds to build, but `fsync` blocks for as long as
/// the disk takes, and while the training thread waited in it OpenBLAS's idle thread spun in
/// `sched_yield`: on the 2-core VM, `experiments/digits-dense.yaml` (30 checkpoints of 1.2 MB)
/// spent 2–3 s in the kernel with checkpoints and 0.1–0.2 s without, and an `fsync` that does
/// nothing (LD_PRELOAD) removed all of it. The write itself is unchanged — the same bytes, tmp
/// file, `fsync`, rename, `fsync` of the directory (`H5File.writeAtomically`) — only the thread
/// that waits for it is another one, so a checkpoint is exactly as safe once it is visible, and
/// one that a kill -9 cut short is a `.tmp` file, which is no checkpoint (`CheckpointStore.steps`).
///
/// At most one write is in flight: `submit` waits for the previous one first, so files appear in
/// step order and a slow disk slows training down instead of piling up images in memory. A
/// failed write (a full disk) is kept and thrown by the next `submit` or `finish`, with the
/// message it would have had on the training thread (it names the checkpoint file). Only system
/// calls run on the writer's thread; HDF5 stays on the thread that owns it.
final class CheckpointWriter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "moe-run.checkpoint-writer")
    private let group = DispatchGroup()
    private let lock = NSLock()
    /// The first write that failed; every later `submit` and `finish` throws it.
    private var failure: Error?

    /// Writes `bytes` to `path` atomically and durably in the background, then removes `stale`
    /// (the files of checkpoints no longer kept: only once the new one is durable). Throws the
    /// failure of an earlier write.
    func submit(_ bytes: [UInt8], to path: String, thenRemove stale: [String]) throws {
        try finish()
        queue.async(group: group) { [self] in
            do {
                try H5File.writeAtomically(bytes, to: path)
                for file in stale { unlink(file) }
            } catch {
                lock.withLock { failure = failure ?? error }
            }
        }
    }

    /// Waits for the write in flight; throws the first failed write's error.
    func finish() throws {
        group.wait()
        if let failure = lock.withLock({ failure }) { throw failure }
    }

    /// Waits for the write in flight, whatever became of it (a task that fails for another reason
    /// must not exit while its tmp file is being written).
    func settle() { group.wait() }
}
