import CMPI
import Foundation

/// Why MPI could not be set up or used outside a collective (the collectives throw
/// `CollectiveError`). The messages are one line.
public enum MPIError: Error, Equatable, CustomStringConvertible {
    /// `MPIWorld.initialize` in a process no MPI launcher started.
    case notLaunched
    /// `MPI_Init_thread` failed, or the world it gave is not the one the launcher announced.
    case initialization(String)
    /// MPI was finalized already: no MPI call is allowed any more in this process.
    case finalized
    /// An MPI call returned an error code: the function and MPI's own error text.
    case call(function: String, message: String)

    public var description: String {
        switch self {
        case .notLaunched:
            return "MPI: this process was not started by mpirun or srun (no OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK or multi-task Slurm step in the environment)"
        case .initialization(let m): return "MPI: \(m)"
        case .finalized: return "MPI: already finalized in this process"
        case .call(let f, let m): return "MPI: \(f) failed: \(m)"
        }
    }
}

/// MPI's text for an error code, on one line ("MPI_ERR_TRUNCATE: message truncated").
func mpiErrorText(_ code: Int32) -> String {
    var buffer = [CChar](repeating: 0, count: Int(moe_MPI_MAX_ERROR_STRING()) + 1)
    var length: Int32 = 0
    var errorClass: Int32 = 0
    let text: String
    if MPI_Error_string(code, &buffer, &length) == moe_MPI_SUCCESS() {
        text = String(cString: buffer)
    } else {
        text = "error code \(code)"
    }
    _ = MPI_Error_class(code, &errorClass)
    return "\(text) (error class \(errorClass))".replacingOccurrences(of: "\n", with: " ")
}

/// Throws `MPIError.call` unless `code` is MPI_SUCCESS.
@inline(__always)
func checkMPI(_ code: Int32, _ function: @autoclosure () -> String) throws {
    if code != MPI_SUCCESS { throw MPIError.call(function: function(), message: mpiErrorText(code)) }
}
