extension SpecSchema {
    /// The text of `docs/spec.md`, generated from the schema table, the cross-field rules and the
    /// support gate. A test compares it byte for byte with the committed file; regenerate with
    /// `MOE_RUN_REGENERATE_DOCS=1 swift test --filter MoESpecTests.DocsTests`.
    public static func markdown() -> String {
        var md = """
        # Experiment spec reference

        <!-- Generated from Sources/MoESpec (SpecSchema.markdown()); do not edit by hand.
             Regenerate: MOE_RUN_REGENERATE_DOCS=1 swift test --filter MoESpecTests.DocsTests -->

        An experiment is one YAML file (`moe-run experiments/foo.yaml`). Every key below is
        optional unless marked required; a missing key takes its default. `moe-run validate SPEC`
        checks a spec without running it; the resolved spec (every key, defaults filled in) is
        stored with each run.

        ## Values

        - **Integers** are YAML integers written in decimal: `2.0` is not an integer.
        - **Numbers** accept integers and decimals (`0.001`, `1e-5`, `.5`); they must be finite.
        - **Booleans** are `true` or `false` only (YAML 1.1's `yes`/`no`/`on`/`off` are refused).
        - **Strings** may be plain or quoted; quote text that would read as a number, boolean or
          null (`name: "2024"`).
        - **null** (`null`, `~` or an empty value) only where the type says `or null`.
        - Unknown keys are errors (with a "did you mean" suggestion), and so are duplicate keys.
        - Indent with spaces; a tab in the indentation is an error.
        - Anchors and aliases (`&lr 0.01` ... `*lr`) are allowed while the document, aliases
          expanded, stays under \(YAMLDocument.aliasNodeLimit) nodes; a "billion laughs" is refused before expansion.
        - Relative paths in `data.path` and `split.upcycle_from` are relative to the spec file's
          directory; `output.dir` is relative to the working directory.

        ## Errors

        Every problem is reported as one line, then an optional hint:

        ```
        moe-run: error: FILE:LINE:COL: KEY: message
        ```

        Lines and columns are 1-based (columns count characters). `KEY` is the dotted key path
        (`router.k`, `train.betas[1]`); it is left out for problems that concern no key (YAML
        syntax, tabs, an empty file). Only the first problem is reported: the file's YAML first,
        then the overrides, then each key in the order of this page, then the rules between keys,
        then features that are not supported yet. `moe-run` exits with status 2 and writes nothing.

        ## Overrides: `--set key.path=value`

        `--set` (repeatable) changes a key before validation: `--set router.k=2`,
        `--set train.betas=[0.9,0.99]`, `--set router.capacity_factor=null`,
        `--set fusion.finetune={epochs: 2}`. The value is parsed as YAML (a scalar, or a flow list
        or mapping; an empty value is null). Missing intermediate mappings are created (a null one
        is replaced); a key inside a list cannot be set, set the whole list. Errors in an override
        are reported as `--set:1:COL`, where COL is the position in the argument of the offending
        part: the key segment (`--set router.kk=2` → `--set:1:8: router.kk: unknown key; did you mean k?`),
        or the value; a malformed argument (no `=`) is reported at column 1.

        `--set KEY=null` on a key that cannot be null removes the key, Hydra-style, so its default
        applies (`--set router=null` removes the whole section); on a key that can be null
        (`router.capacity_factor`, `train.grad_clip`) it sets null. `--unset KEY` (repeatable; also
        written `--set ~KEY`) always removes the key; a key that is not written is left alone, a key
        path the schema does not know is an error located in `--unset`. Removals are applied before
        the `--set` values. A dense baseline of an MoE spec, without editing it:
        `--unset router --set experts=1`.

        ## Warnings

        A key written in the spec that cannot affect the run as configured (see "Keys without
        effect" below) is a warning, printed once on stderr and stored in run.h5's `warnings`
        attribute (one line per key):

        ```
        moe-run: warning: FILE:LINE:COL: KEY: message
        ```

        The key is then ignored: the run is exactly the run of the spec without it. So a sweep or an
        override that changes the key another key depends on runs (`--grid router.k=1,2` over
        `normalize_topk: true`). `moe-run validate --strict` makes the first warning an error (exit 2).

        """
        md += "\n## Top level\n\n" + table(root.filter { !$0.isSection })
        for section in root where section.isSection {
            md += "\n## `\(section.key)`\n\n\(section.doc)\n\n" + table(section.children)
            for nested in section.children where nested.isSection {
                md += "\n`\(section.key).\(nested.key)`:\n\n" + table(nested.children)
            }
        }
        md += "\n## Rules between keys\n\n"
        md += "Checked after every key has its own type and range, in this order:\n\n"
        for rule in CrossFieldRules.all { md += "- \(rule.summary)\n" }
        md += "\n## Keys without effect\n\n"
        md += "A key written in the spec that cannot affect the run as configured is a warning (an error with `validate --strict`), "
            + "and then ignored; checked before the rules between keys, in this order:\n\n"
        for rule in IneffectiveKeys.rules { md += "- \(rule.summary)\n" }
        md += "\n## Not supported yet\n\n"
        if SupportGate.entries.isEmpty && SupportGate.runEntries.isEmpty {
            md += "Nothing: every key above runs in this version. A feature that a later issue adds starts "
                + "here, refused with an error naming the key and the issue, until it is built.\n"
        } else if !SupportGate.entries.isEmpty {
            md += "What later issues build is refused with an error naming the key and the issue, checked in this order:\n\n"
            md += "| key | refused | arrives with issue |\n|---|---|---|\n"
            for entry in SupportGate.entries { md += "| `\(entry.keyPath)` | \(entry.refused) | \(entry.issue) |\n" }
        }
        if !SupportGate.runEntries.isEmpty {
            md += (SupportGate.entries.isEmpty ? "" : "\n") + "Valid, and shown by `moe-run plan`, but refused when run (exit 2, nothing written) until the runtime builds them:\n\n"
            md += "| key | refused | arrives with issue |\n|---|---|---|\n"
            for entry in SupportGate.runEntries { md += "| `\(entry.keyPath)` | \(entry.refused) | \(entry.issue) |\n" }
        }
        return md
    }

    private static func table(_ fields: [SchemaField]) -> String {
        var out = "| key | type | default | meaning |\n|---|---|---|---|\n"
        for field in fields {
            out += "| `\(field.key)` | \(typeText(field)) | \(defaultText(field)) | \(field.doc) |\n"
        }
        return out
    }

    private static func typeText(_ field: SchemaField) -> String {
        var text: String
        switch field.type {
        case .integer(let lo, let hi): text = hi.map { "integer \(lo)..\($0)" } ?? "integer >= \(lo)"
        case .number(let bounds): text = bounds.text.map { "number \($0)" } ?? "number"
        case .boolean: text = "`true` or `false`"
        case .string: text = "string"
        case .choice(let words): text = words.map { "`\($0)`" }.joined(separator: ", ")
        case .custom(let description): text = description
        case .section: text = "mapping (below)"
        }
        if field.nullable { text += ", or `null`" }
        return text.replacingOccurrences(of: "|", with: "\\|")
    }

    private static func defaultText(_ field: SchemaField) -> String {
        if let text = field.defaultText { return text }
        if let value = field.defaultValue { return "`\(YAMLText.inline(value))`" }
        return field.isSection ? "" : "—"
    }
}
