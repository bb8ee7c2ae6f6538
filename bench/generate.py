#!/usr/bin/env python3
"""Generators of large inputs for the `kflow check` benchmark.

`flow(n)` writes a flow of n tasks in which every task reads outputs of
earlier ones (data edges) and orders after others (`after`), across all task
shapes the checker handles differently. `workflow(n)` writes the equivalent
GitHub Actions workflow: n jobs, each `needs` earlier jobs and reads their
outputs in `${{ }}` expressions, for actionlint.
"""

import sys


def flow(n: int) -> str:
    out = [
        "/// Generated benchmark flow.",
        f"flow bench_{n} {{",
        '  input registry: string = "127.0.0.1:5000"',
        "  input version: string = \"1.0.0\"",
        "  secret token = env(\"TOKEN\")",
        "",
    ]
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(f"  task t{i} = docker.build {{")
            out.append('    context: "."')
            out.append(f'    tags: [ref("${{registry}}/app{i}:${{version}}")]')
            if i >= 4:
                out.append(f"    after: [t{i - 4}]")
            out.append("  }")
        elif kind == 1:
            out.append(f"  task t{i} = docker.push {{")
            out.append(f"    image: t{i - 1}.image")
            out.append(f'    to: "${{registry}}/app{i}:${{version}}"')
            out.append("  }")
        elif kind == 2:
            out.append(f"  task t{i} = shell.run {{")
            out.append(f'    script: "echo ${{t{i - 1}.digest}} ${{t{i - 2}.id}}"')
            out.append("    env: { TOKEN: token }")
            out.append("    timeout: 5m")
            out.append("  }")
        else:
            out.append(f"  task t{i} = container.run {{")
            out.append(f"    image: t{i - 2}.pinned")
            out.append(f'    cmd: ["/app", "--check", "${{t{i - 1}.stdout}}"]')
            out.append("    pull: missing")
            out.append("  }")
    last = n - 1 - ((n - 1) % 4) + 1
    out.append("")
    out.append(f"  output digest = t{last}.digest")
    out.append("}")
    return "\n".join(out) + "\n"


def workflow(n: int) -> str:
    out = [
        "name: bench",
        "on:",
        "  push:",
        "    branches: [main]",
        "jobs:",
    ]
    for i in range(n):
        out.append(f"  j{i}:")
        out.append("    runs-on: ubuntu-latest")
        needs = [f"j{k}" for k in (i - 1, i - 2) if k >= 0]
        if needs:
            out.append(f"    needs: [{', '.join(needs)}]")
        out.append("    outputs:")
        out.append(f"      digest: ${{{{ steps.s{i}.outputs.digest }}}}")
        out.append("    steps:")
        out.append(f"      - id: s{i}")
        if needs:
            ref = f"${{{{ needs.{needs[0]}.outputs.digest }}}}"
        else:
            ref = "${{ github.sha }}"
        out.append(f'        run: echo "digest={ref}" >> "$GITHUB_OUTPUT"')
        out.append("        env:")
        out.append("          TOKEN: ${{ secrets.TOKEN }}")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    what, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    text = flow(n) if what == "flow" else workflow(n)
    with open(path, "w") as f:
        f.write(text)
