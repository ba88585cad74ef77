"""LaTeX leaderboards: a booktabs table per dataset, ready to ``\\input`` in a paper
(needs ``\\usepackage{booktabs}``). The best student accuracy is set in bold."""

from __future__ import annotations

from pathlib import Path

from kdbench.report import Leaderboard
from kdbench_reporters._format import count, gain, missing, pm, si

_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
            "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def escape(text: str) -> str:
    return "".join(_SPECIAL.get(c, c) for c in str(text))


class LatexReporter:
    """LaTeX booktabs table per dataset."""

    HEADERS = ["Teacher", "Student", "Fusion", "Method", r"Acc (\%)", r"F1 (\%)", "Gain (pts)", "$n$", "Params", "FLOPs", "Lat. (ms)"]

    def render(self, board: Leaderboard) -> str:
        rows = board.table.to_dict("records")
        students = [r["accuracy_mean"] for r in rows if r["role"] == "student" and not missing(r["accuracy_mean"])]
        best = max(students) if students else None
        lines = [r"\begin{table}[t]", r"\centering", r"\small",
                 r"\begin{tabular}{llll" + "r" * (len(self.HEADERS) - 4) + "}", r"\toprule",
                 " & ".join(self.HEADERS) + r" \\", r"\midrule"]
        teacher_rows = True
        for r in rows:
            if teacher_rows and r["role"] != "teacher":
                teacher_rows = False
                if r is not rows[0]:
                    lines.append(r"\midrule")
            acc = pm(r["accuracy_mean"], r["accuracy_std"], sep=r" $\pm$ ")
            if r["role"] == "student" and best is not None and r["accuracy_mean"] == best:
                acc = r"\textbf{" + acc + "}"
            lat = r["latency_ms_mean"]
            cells = [escape(r["teacher"]), escape(r["student"]), escape(r["fusion"]), escape(r["method"]), acc,
                     pm(r["f1_macro_mean"], r["f1_macro_std"], sep=r" $\pm$ "), escape(gain(r, mark="")) + ("$^*$" if r["gain_significant"] else ""),
                     escape(count(r)), si(r["params"]), si(r["flops"]), "--" if missing(lat) else f"{lat:.3f}"]
            lines.append(" & ".join(c.replace("—", "--") for c in cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}",
                  r"\caption{" + escape(f"{board.grid}: {board.dataset}") + r". Test accuracy and macro-F1 of the checkpoint "
                  r"selected on validation, mean $\pm$ std over $n$ seeds; gain over the same student without a teacher, "
                  r"paired by seed, with its 95\% interval ($^*$: excludes zero).}",
                  r"\label{tab:" + escape(board.slug) + "}", r"\end{table}", ""]
        return "\n".join(lines)

    def write(self, boards: list[Leaderboard], out_dir: Path) -> list[Path]:
        paths = []
        for board in boards:
            path = out_dir / f"{board.slug}.tex"
            path.write_text(self.render(board))
            paths.append(path)
        return paths
