// The MPI side of the collectives test peer: started by MoEMPITests under `mpirun`.
//
//   moe-comm-peer mpi-world <outfile>
//
// mpi-world: whether MPI launched this process (from the environment, before any MPI call); if
// so, initialises the world, splits it into {even, odd} ranks (key: minus the world rank, so the
// order is reversed), and writes one line per process to `<outfile>.<world rank>`:
//   "world <rank> <size> <thread level> <launcher> <host> split <rank> <size> dup <rank> <size>"
// and, when not launched by MPI, writes "not launched" to `<outfile>` and never calls MPI.
// On failure: "ERROR <description>" to the file and stderr, exit 1.
import Foundation
import MoEComm
import MoEMPI

func mpiPeerFail(_ path: String, _ error: Error) -> Never {
    let text = "ERROR \(error)\n"
    try? Data(text.utf8).write(to: URL(fileURLWithPath: path))
    FileHandle.standardError.write(Data(text.utf8))
    exit(1)
}

func runMPIPeer(_ args: [String]) -> Never {
    guard args.count >= 3 else {
        FileHandle.standardError.write("usage: moe-comm-peer mpi-world <outfile>\n".data(using: .utf8)!)
        exit(2)
    }
    let scenario = args[1], outfile = args[2]
    guard MPIWorld.isLaunchedByMPI() else {
        try? Data("not launched\n".utf8).write(to: URL(fileURLWithPath: outfile))
        exit(0)
    }
    let mine = outfile + ".\(MPILaunchEnvironment.detect()?.rank ?? -1)"
    do {
        let world = try MPIWorld.initialize()
        let path = outfile + ".\(world.rank)"
        switch scenario {
        case "mpi-world":
            guard let half = try world.split(color: world.rank % 2, key: -world.rank) else {
                throw MPIError.call(function: "split", message: "no group for color \(world.rank % 2)")
            }
            let copy = try world.group.duplicate()
            try copy.barrier()
            let none = try world.split(color: nil, key: 0)
            let line = "world \(world.rank) \(world.size) \(world.threadLevel) \(world.launch.launcher) \(world.processorName) split \(half.rank) \(half.size) dup \(copy.rank) \(copy.size) undefined \(none == nil ? "nil" : "group")\n"
            half.free()
            copy.free()
            try Data(line.utf8).write(to: URL(fileURLWithPath: path))
        default:
            throw CollectiveError.invalidArgument("unknown MPI scenario \(scenario)")
        }
        world.finalize()
        exit(0)
    } catch {
        mpiPeerFail(mine, error)
    }
}
