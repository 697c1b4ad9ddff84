import Foundation
import MoEHDF5
import XCTest

/// The documentation in `docs/` and the README is part of the product: these tests run its
/// examples as written, hold `docs/cli.md` to the binary's real `--help`, and keep every link
/// inside the repository (a clone has nothing else).
final class DocsEndToEndTests: XCTestCase {
    /// docs/formats.md's worked example: its h5py script, its spec and its shell commands run
    /// verbatim (with `python` and `moe-run` on PATH), and the run trains on the file it wrote.
    func testWorkedDataFileExampleRunsAsWritten() throws {
        let python = ProcessInfo.processInfo.environment["MOE_RUN_PYTHON"] ?? (NSHomeDirectory() + "/.cache/moe-run/venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw XCTSkip("no Python venv with h5py at \(python); `make test` creates it")
        }
        let doc = try Markdown("docs/formats.md")
        let example = Markdown(path: doc.path, text: try XCTUnwrap(doc.section(containing: "Worked example")))
        let (script, spec, commands) = (example.codeBlocks("python"), example.codeBlocks("yaml"), example.codeBlocks("sh"))
        guard [script.count, spec.count, commands.count] == [1, 1, 1] else {
            return XCTFail("the example is one python script, one yaml spec and one sh block; found \([script.count, spec.count, commands.count])")
        }
        XCTAssertTrue(script[0].hasPrefix("# make_data.py"), "the script names its file in its first line")
        XCTAssertTrue(commands[0].contains("python make_data.py") && commands[0].contains("moe-run mydata.yaml"))

        let dir = try CLI.workspace(spec[0], file: "mydata.yaml")
        try script[0].write(toFile: dir + "/make_data.py", atomically: true, encoding: .utf8)
        let bin = try Self.commandDirectory(["python": python, "moe-run": CLI.binary])
        let r = try Self.shell(commands[0], in: dir, path: bin)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)

        // What the commands promise in their comments and in the text.
        let validateLine = try XCTUnwrap(commands[0].components(separatedBy: "\n").first { $0.hasPrefix("moe-run validate") })
        let promised = try XCTUnwrap(validateLine.components(separatedBy: "# ").last).trimmingCharacters(in: .whitespaces)
        XCTAssertTrue(r.stdout.components(separatedBy: "\n").contains(promised), "validate printed: \(r.stdout)")
        let runs = try FileManager.default.contentsOfDirectory(atPath: dir + "/results/mydata")
        XCTAssertEqual(runs.count, 1)
        let runDir = dir + "/results/mydata/" + runs[0]
        let run = try H5File.open(runDir + "/run.h5")
        XCTAssertEqual(try run.stringAttribute("status"), "complete")
        // The file's optional `domain` reached the run; its 600 rows were split 0.8/0.1/0.1.
        let data = try H5File.open(runDir + "/tasks/data.h5")
        XCTAssertEqual(try data.read("data/train/domain", as: Int.self).shape, [480])
        XCTAssertEqual(try data.read("data/train/x", as: Float.self).shape, [480, 8])
        let eval = try XCTUnwrap(r.stdout.components(separatedBy: "\n").first { $0.hasPrefix("mydata.h5: 600 samples, loss ") }, r.stdout)
        let accuracy = try XCTUnwrap(Double(try XCTUnwrap(eval.components(separatedBy: "accuracy ").last)))
        XCTAssertGreaterThan(accuracy, 0.9, "three separated clusters are learnt: \(eval)")
    }

    /// Every subcommand `moe-run --help` lists has its section in docs/cli.md, and every option
    /// of its `--help` is named in that section.
    func testCLIDocsNameEveryCommandAndOption() throws {
        let cli = try Markdown("docs/cli.md")
        let top = try CLI.run(["--help"], in: NSTemporaryDirectory())
        XCTAssertEqual(top.status, 0)
        let subcommands = Self.subcommands(inHelp: top.stdout)
        XCTAssertTrue(subcommands.contains("run") && subcommands.contains("validate"), top.stdout)
        for option in Self.options(inHelp: top.stdout) {
            XCTAssertTrue(cli.text.contains("`\(option)"), "docs/cli.md does not name moe-run's \(option)")
        }
        for sub in subcommands {
            let help = try CLI.run([sub, "--help"], in: NSTemporaryDirectory())
            XCTAssertEqual(help.status, 0, help.stderr)
            guard let section = cli.section(containing: "## `moe-run \(sub)`") else {
                XCTFail("docs/cli.md has no section \"## `moe-run \(sub)`\""); continue
            }
            for option in Self.options(inHelp: help.stdout) where option != "--help" && option != "--version" {
                XCTAssertTrue(section.contains("`\(option)"), "docs/cli.md's section on \(sub) does not name \(option)")
            }
        }
    }

    /// Every attribute a real run writes (run.h5, the task files, a checkpoint and its position)
    /// is in the tables of docs/results.md and docs/formats.md.
    func testResultsDocsNameEveryAttributeARunWrites() throws {
        let runDir = try CLI.completeRun(tinySpec(epochs: 1))
        let results = try Markdown("docs/results.md"), formats = try Markdown("docs/formats.md")
        func rows(_ doc: Markdown, _ heading: String) throws -> [String] {
            try XCTUnwrap(doc.section(containing: heading), "\(doc.path) has no section \(heading)")
                .components(separatedBy: "\n").filter { $0.hasPrefix("| `") }
        }
        func assertDocumented(_ names: [String], in rows: [String], _ what: String) {
            XCTAssertFalse(names.isEmpty, what)
            for name in names {
                XCTAssertTrue(rows.contains { $0.components(separatedBy: "|")[1].contains("`\(name)`") }, "\(what): attribute \(name) is not documented")
            }
        }
        assertDocumented(try H5File.open(runDir + "/run.h5").attributeNames(), in: try rows(results, "## run.h5"), "run.h5")
        let taskRows = try rows(results, "## Task files")
        for task in ["data", "train", "evaluate"] {
            assertDocumented(try H5File.open(runDir + "/tasks/\(task).h5").attributeNames(), in: taskRows, "tasks/\(task).h5")
        }
        let train = try H5File.open(runDir + "/tasks/train.h5")
        assertDocumented(try train.openGroup("model").attributeNames(), in: try rows(formats, "## Checkpoints"), "a checkpoint")
        // Every key of a checkpoint's `config` (`kind` included) is named in the mlp section.
        let config = try JSONSerialization.jsonObject(with: Data(try train.openGroup("model").stringAttribute("config").utf8)) as! [String: Any]
        let mlp = try XCTUnwrap(formats.section(containing: "### `mlp`"), "docs/formats.md has no mlp section")
        XCTAssertEqual(config["kind"] as? String, "mlp")
        for key in config.keys { XCTAssertTrue(mlp.contains("`\(key)`"), "config key \(key) is not in docs/formats.md's mlp section") }
        let step = try XCTUnwrap(try train.openGroup("checkpoints").children().first)
        let position = try results.section(containing: "## Checkpoints and resume") ?? ""
        for name in try train.openGroup("checkpoints/" + step).attributeNames() {
            XCTAssertTrue(position.contains("`\(name)`"), "checkpoint attribute \(name) is not in results.md")
        }
    }

    /// README and every Markdown file of the repository link and point only inside it: no path
    /// to the design notes outside the clone, every relative link resolves to a file in the
    /// repository, and every `#anchor` to a heading of its file.
    func testDocumentationStaysInsideTheRepository() throws {
        let root = CLI.repositoryRoot.standardizedFileURL.path
        let files = Self.markdownFiles(under: root)
        XCTAssertTrue(files.contains("README.md") && files.contains("docs/cli.md") && files.contains("docs/formats.md"), "\(files)")
        for file in files {
            let doc = try Markdown(file)
            for outside in ["ARCHITECTURE", "../shared", "/work/"] {
                XCTAssertFalse(doc.text.contains(outside), "\(file) refers to \(outside), which a clone does not have")
            }
            let base = URL(fileURLWithPath: root + "/" + file).deletingLastPathComponent()
            for target in doc.linkTargets where !target.contains("://") && !target.hasPrefix("mailto:") {
                let parts = target.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
                let linked = parts[0].isEmpty ? URL(fileURLWithPath: root + "/" + file) : base.appendingPathComponent(parts[0]).standardizedFileURL
                XCTAssertTrue(linked.path.hasPrefix(root + "/"), "\(file): link \(target) leaves the repository")
                XCTAssertTrue(FileManager.default.fileExists(atPath: linked.path), "\(file): link \(target) points to nothing")
                if parts.count == 2, linked.pathExtension == "md", let target = try? Markdown(String(linked.path.dropFirst(root.count + 1))) {
                    XCTAssertTrue(target.anchors.contains(parts[1]), "\(file): link \(parts.joined(separator: "#")): no such heading")
                }
            }
        }
        let readme = try Markdown("README.md")
        let firstCommands = readme.codeBlocks("sh").first?.components(separatedBy: "\n").prefix(2).map { $0.prefix(9) }
        XCTAssertEqual(firstCommands, ["make run ", "make test"], "README starts with make run and make test")
        for doc in ["docs/cli.md", "docs/results.md", "docs/formats.md", "docs/failures.md", "docs/spec.md"] {
            XCTAssertTrue(readme.linkTargets.contains(doc), "README does not link \(doc)")
        }
    }
}

extension DocsEndToEndTests {
    /// The subcommands listed under `SUBCOMMANDS:` of a help text.
    static func subcommands(inHelp help: String) -> [String] {
        let lines = help.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "SUBCOMMANDS:") else { return [] }
        return lines[(start + 1)...].prefix { !$0.isEmpty }
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") }
            .compactMap { $0.split(separator: " ").first.map(String.init) }
    }

    /// The long options (`--name`) a help text's `OPTIONS:` section defines (the option column
    /// only, not options mentioned in descriptions).
    static func options(inHelp help: String) -> [String] {
        let lines = help.components(separatedBy: "\n")
        guard let start = lines.firstIndex(of: "OPTIONS:") else { return [] }
        return lines[(start + 1)...].prefix { !$0.isEmpty }.flatMap { line -> [String] in
            guard line.hasPrefix("  -") else { return [] }
            let column = line.trimmingCharacters(in: .whitespaces).components(separatedBy: "  ")[0]
            return column.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init).filter { $0.hasPrefix("--") }
        }
    }

    /// Repository-relative paths of the Markdown files (not under hidden folders, `.build`, or
    /// run outputs below `results/`).
    static func markdownFiles(under root: String) -> [String] {
        let all = FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []
        return all.filter { path in
            path.hasSuffix(".md") && !path.split(separator: "/").contains { $0.hasPrefix(".") }
                && !(path.hasPrefix("results/") && path != "results/README.md")
        }.sorted()
    }

    /// A fresh directory holding one executable shell wrapper per command (`exec TARGET "$@"`),
    /// so a documented command line runs as written. Wrappers, not symlinks: a venv's python
    /// finds its packages only when started by its own path.
    static func commandDirectory(_ commands: [String: String]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-run-bin-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, target) in commands {
            try "#!/bin/sh\nexec '\(target)' \"$@\"\n".write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir + "/" + name)
        }
        return dir
    }

    /// Runs `script` with `sh -e` in `dir`, with `path` first on PATH and the variables `unset` removed.
    static func shell(_ script: String, in dir: String, path: String, unset: [String] = []) throws -> CLI.Result {
        let environment = unset.flatMap { ["-u", $0] } + ["PATH=" + path + ":/usr/local/bin:/usr/bin:/bin"]
        return try CLI.tool("/usr/bin/env", environment + ["/bin/sh", "-e", "-c", "cd '\(dir)'\n" + script])
    }
}
