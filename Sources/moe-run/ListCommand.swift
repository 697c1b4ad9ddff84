import ArgumentParser
import Foundation
import MoEReport

/// `moe-run ls [DIR]`: the runs under a results folder (`RunList`).
struct ListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List the runs under a results folder: status, name, id, swept values, key metrics, age.",
        discussion: "DIR is a results root (results/<name>/<run-id>/), a spec's folder or a run directory; default: results. Oldest first.")

    @Argument(help: "The folder to list (default: results).") var directory = "results"

    func run() throws {
        let list: RunList
        do {
            list = try RunList(directory: directory)
        } catch let error as ReportError {
            throw CLIError(message: error.description, exitCode: error.exitCode)
        }
        if list.table.rows.isEmpty {
            print("no runs under \(directory)")
            return
        }
        print(list.table.text())
    }
}
