"""``python -m models audit``: Zhu et al. 2019, Table 2 (MACC and params of the four scratch nets) against our nets,
and the search for the reading of the paper that reproduces Table 2 where the text does not.

Table 2 (``compare/data/table2.csv``) prints, per net, "MACC" and "Param" as Netscope shows them; the inputs are
Table 3's. The nets are ``prototxt/<net>/deploy.prototxt`` (the paper's text) and ``prototxt/<net>_table2/`` (the
reading found here, where the text does not reproduce Table 2). Counting: :func:`models.accounting.net_cost` at
batch 1 (conv and InnerProduct biases counted, LRN MACC counted; see its docstring).

Verdicts:

- ``match``: MACC and params both within :data:`TOLERANCE` (0.5%) of Table 2;
- ``deviation``: otherwise.
- ``exact`` (reported alongside): both numbers round to Table 2's printed digits ("388.77M", "5.98M").

The search (``--search``) enumerates the small space of readings the text allows (which of the stated conv1/pool1
changes were applied, what happens at pool5, auxiliary classifiers counted or not, LRN counted or not, input
size; for VGG_R which VGG16 layers are kept, which blob the first FC layer reads and the FC widths), builds every
candidate by editing the text-faithful ``deploy.prototxt`` as a ``pb.NetParameter``, counts it with
``models.accounting`` and ranks the candidates: exact first, then within tolerance, then fewest departures from
the text, then smallest deviation. ``--write-findings`` records the result in
``compare/data/architecture_findings.json``.

Usage::

    python -m models audit [--json]
    python -m models audit --layers GoogleNet_R        # per-layer breakdown (also: a prototxt folder name)
    python -m models audit --search [--top 5] [--json]
    python -m models audit --write-findings compare/data/architecture_findings.json
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .accounting import human, net_cost
from .errors import CaffeError, NetDefinitionError
from .graph import load_net
from .prototxt_io import read_net_text
from .resources import display_path, nets_dir
from .schema import pb

TABLE2_CSV = "compare/data/table2.csv"            # package data of compare (found with importlib.resources)
FINDINGS_JSON = "compare/data/architecture_findings.json"


def _paper_data(name: str):
    """A file of the paper's data (compare/data), from the checkout or the installed wheel."""
    from importlib import resources

    return resources.files("compare").joinpath("data", name)

#: Relative tolerance for a Table 2 "match".
TOLERANCE = 0.005

#: Table 2 row -> the prototxt folder that follows the paper's text.
TEXT_NETS = {"GoogleNet": "googlenet", "GoogleNet_R": "googlenet_r", "VGGNet_R": "vgg_r", "CIFAR": "cifar"}
#: Table 2 row -> the prototxt folder holding the reading that reproduces Table 2, where it differs from the text.
TABLE2_NETS = {"GoogleNet_R": "googlenet_r_table2", "VGGNet_R": "vgg_r_table2"}

_UNITS = {"G": 1e9, "M": 1e6, "K": 1e3, "": 1.0}


class AuditError(CaffeError):
    """A Table 2 data file or audit request that does not make sense (unknown net, malformed CSV row)."""


# ---------------------------------------------------------------------------------------------------------------
# Table 2 as data.
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Table2Row:
    """One row of Table 2 (plus Table 3's input size)."""

    net: str
    input: str            # "64x64x3"
    macc_printed: str     # "388.77M"
    macc: float
    params_printed: str   # "5.98M"
    params: float

    @property
    def input_hw(self) -> int:
        return int(self.input.split("x")[0])


def parse_printed(text: str) -> float:
    """``"388.77M"`` -> 388770000.0 (Netscope's K/M/G suffixes)."""
    text = text.strip()
    unit = text[-1] if text[-1] in "KMG" else ""
    try:
        return float(text[:len(text) - len(unit)]) * _UNITS[unit]
    except ValueError:
        raise AuditError(f"{TABLE2_CSV}: cannot read {text!r} as a Netscope number like '388.77M'") from None


def rounds_to(value: float, printed: str) -> bool:
    """True when ``value`` printed with ``printed``'s unit and number of decimals gives ``printed``."""
    printed = printed.strip()
    unit = printed[-1] if printed[-1] in "KMG" else ""
    number = printed[:len(printed) - len(unit)]
    decimals = len(number.split(".")[1]) if "." in number else 0
    return f"{value / _UNITS[unit]:.{decimals}f}" == number


def read_table2(path=None) -> dict[str, Table2Row]:
    """Table 2 rows keyed by net name (default: compare/data/table2.csv). Checks that each printed number agrees
    with its numeric column; raises AuditError naming the file and line otherwise."""
    rows = {}
    if path is None:
        path = _paper_data("table2.csv")
    with path.open("r", newline="", encoding="utf-8") as fh:
        for lineno, r in enumerate(csv.DictReader(fh), start=2):
            try:
                row = Table2Row(r["net"], r["input"], r["macc_printed"], float(r["macc"]), r["params_printed"],
                                float(r["params"]))
            except (KeyError, ValueError) as e:
                raise AuditError(f"{path}:{lineno}: malformed Table 2 row ({e})") from None
            for printed, number in ((row.macc_printed, row.macc), (row.params_printed, row.params)):
                if abs(parse_printed(printed) - number) > 1e-6 * number:
                    raise AuditError(f"{path}:{lineno}: printed {printed!r} disagrees with the number {number}")
            rows[row.net] = row
    return rows


# ---------------------------------------------------------------------------------------------------------------
# Auditing one net.
# ---------------------------------------------------------------------------------------------------------------
def relative(value: float, reference: float) -> float:
    return (value - reference) / reference


@dataclass
class AuditRow:
    net: str                 # Table 2 row
    reading: str             # "text" | "table2" | a search description
    prototxt: str | None     # repo-relative path, when the reading is a checked-in file
    input: str
    macc: int
    params: int
    table2_macc: str
    table2_params: str
    rel_dev_macc: float
    rel_dev_params: float
    verdict: str             # "match" | "deviation"
    exact: bool              # both round to Table 2's printed digits
    explanation: str = ""

    def line(self) -> str:
        return (f"{self.net:<12} {self.reading:<7} {self.input:>9} {human(self.macc):>9} {self.table2_macc:>8} "
                f"{100 * self.rel_dev_macc:>+9.3f}% {human(self.params):>9} {self.table2_params:>8} "
                f"{100 * self.rel_dev_params:>+9.3f}%  {self.verdict}{' (exact)' if self.exact else ''}")


HEADER = (f"{'net':<12} {'reading':<7} {'input':>9} {'MACC':>9} {'Table 2':>8} {'dev':>10} {'params':>9} "
          f"{'Table 2':>8} {'dev':>10}  verdict")


def judge(net: str, reading: str, row: Table2Row, macc: int, params: int, input_: str,
          prototxt: str | None = None, explanation: str = "") -> AuditRow:
    dm, dp = relative(macc, row.macc), relative(params, row.params)
    verdict = "match" if abs(dm) <= TOLERANCE and abs(dp) <= TOLERANCE else "deviation"
    exact = rounds_to(macc, row.macc_printed) and rounds_to(params, row.params_printed)
    return AuditRow(net, reading, prototxt, input_, int(macc), int(params), row.macc_printed, row.params_printed,
                    dm, dp, verdict, exact, explanation)


def _input_of(net) -> str:
    shape = next(iter(net.inputs.values()))
    return f"{shape[2]}x{shape[3]}x{shape[1]}"


def audit_file(net_name: str, folder: str, reading: str, table: dict[str, Table2Row] | None = None) -> AuditRow:
    """Count ``prototxt/<folder>/deploy.prototxt`` and judge it against Table 2's row ``net_name``."""
    table = table or read_table2()
    path = nets_dir() / folder / "deploy.prototxt"
    net = load_net(str(path), batch=1)
    cost = net_cost(net)
    rel = display_path(path)
    row = judge(net_name, reading, table[net_name], cost.macc, cost.params, _input_of(net), rel)
    if row.input != table[net_name].input:
        row.verdict = "deviation"
        row.explanation = f"input {row.input} but Table 3 gives {table[net_name].input}"
    return row


def audit(table: dict[str, Table2Row] | None = None) -> list[AuditRow]:
    """The four Table 2 nets as the text describes them, then the Table 2 readings shipped as prototxt."""
    table = table or read_table2()
    rows = [audit_file(name, folder, "text", table) for name, folder in TEXT_NETS.items()]
    rows += [audit_file(name, folder, "table2", table) for name, folder in TABLE2_NETS.items()]
    return rows


def _resolve_net(name: str) -> Path:
    """``GoogleNet_R`` (a Table 2 row) or ``googlenet_r_table2`` (a prototxt folder) -> its deploy.prototxt."""
    folder = TEXT_NETS.get(name, name)
    path = nets_dir() / folder / "deploy.prototxt"
    if not path.exists():
        raise AuditError(f"unknown net {name!r}: expected a Table 2 row ({', '.join(TEXT_NETS)}) or a folder "
                         f"under prototxt/ with a deploy.prototxt")
    return path


# ---------------------------------------------------------------------------------------------------------------
# The deviation search.
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """One reading of the paper: its knobs, the net they build, how many departures from the text it makes."""

    net: str
    knobs: dict
    departures: list = field(default_factory=list)
    count_lrn: bool = True
    proto: object = None

    def describe(self) -> str:
        return "; ".join(self.departures) if self.departures else "as the text says"


def _template(folder: str) -> "pb.NetParameter":
    return read_net_text(str(nets_dir() / folder / "deploy.prototxt"))


def _layer(net, name):
    for lp in net.layer:
        if lp.name == name:
            return lp
    raise NetDefinitionError(f"template has no layer '{name}'")


def _remove_layer(net, name: str) -> None:
    """Delete layer ``name`` and rewire its consumers to its bottom (a pass-through removal)."""
    lp = _layer(net, name)
    bottom, top = lp.bottom[0], lp.top[0]
    keep = [l for l in net.layer if l.name != name]
    del net.layer[:]
    for l in keep:
        for i, b in enumerate(l.bottom):
            if b == top:
                l.bottom[i] = bottom
        net.layer.add().CopyFrom(l)


def _set_input(net, hw: int) -> None:
    shape = _layer(net, "data").input_param.shape[0]
    shape.dim[2] = shape.dim[3] = hw


# GoogleNet_R: the text's five changes to conv1/pool1 (paper, "Training from Scratch"), BVLC value -> text value.
GOOGLENET_R_CHANGES = {
    "conv1 filters": ("num_output", 64, 32),
    "conv1 pad": ("pad", 3, 2),
    "conv1 kernel": ("kernel_size", 7, 5),
    "conv1 stride": ("stride", 2, 1),
    "pool1 stride": ("pool_stride", 2, 1),
}


def googlenet_r_candidates(inputs=(64, 224)):
    """Readings of GoogleNet_R: each of the text's five conv1/pool1 changes applied or not, pool5 as BVLC (7x7 AVE)
    / global / removed, input 64 (text, Table 3) or 224 (GoogLeNet's), auxiliary classifiers counted or not, LRN
    counted or not."""
    template = _template("googlenet_r")
    aux = [lp for lp in read_net_text(str(nets_dir() / "googlenet_r" / "train_val.prototxt")).layer
           if lp.name.startswith(("loss1/", "loss2/")) and lp.type not in ("SoftmaxWithLoss", "Accuracy")]
    for applied in itertools.product((True, False), repeat=len(GOOGLENET_R_CHANGES)):
        for pool5, hw, with_aux in itertools.product(("bvlc", "global", "none"), inputs, (False, True)):
            net = pb.NetParameter()
            net.CopyFrom(template)
            _set_input(net, hw)
            conv1 = _layer(net, "conv1/7x7_s2").convolution_param
            departures, knobs = [], {"input": hw, "pool5": pool5, "aux": with_aux}
            for (label, (fieldname, bvlc, text)), on in zip(GOOGLENET_R_CHANGES.items(), applied):
                value = text if on else bvlc
                knobs[label] = value
                if not on:
                    departures.append(f"{label} {bvlc} (text: {text})")
                if fieldname == "pool_stride":
                    _layer(net, "pool1/3x3_s2").pooling_param.stride = value
                elif fieldname == "num_output":
                    conv1.num_output = value
                else:
                    getattr(conv1, fieldname)[:] = [value]
                    if fieldname == "stride" and value == 1:
                        del conv1.stride[:]
            if pool5 == "global":
                p = _layer(net, "pool5/7x7_s1").pooling_param
                p.ClearField("kernel_size")
                p.ClearField("stride")
                p.global_pooling = True
                departures.append("pool5 global (text: BVLC 7x7)")
            elif pool5 == "none":
                _remove_layer(net, "pool5/7x7_s1")
                departures.append("no pool5: the classifier reads inception_5b/output (text: BVLC 7x7 pool5)")
            if hw != 64:
                departures.append(f"input {hw} (text and Table 3: 64)")
            if with_aux:
                for lp in aux:
                    net.layer.add().CopyFrom(lp)
            for count_lrn in (True, False):
                knobs_c = dict(knobs, lrn_counted=count_lrn)
                yield Candidate("GoogleNet_R", knobs_c, list(departures), count_lrn, net)


VGG16_CONVS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
VGG_FC_WIDTHS = (4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2)


def _vgg_net(n_convs: int, pool_after: bool, fc_from_pool1: bool, widths: tuple, hw: int):
    """conv1_1 .. the n-th VGG16 conv (with VGG's pool1 between blocks), optionally a 2x2/2 max pool after the last
    conv, then FC layers of ``widths`` and the 2-way fc8 (ReLU and dropout omitted: they have no MACC or
    params). Built from the layers of prototxt/vgg_r/deploy.prototxt."""
    template = _template("vgg_r")
    by_name = {lp.name: lp for lp in template.layer}
    conv11 = by_name["conv1_1"]
    net = pb.NetParameter()
    net.name = "VGG_R_candidate"
    net.layer.add().CopyFrom(by_name["data"])
    _set_input(net, hw)
    bottom, channels = "data", {"conv1_1": 64, "conv1_2": 64, "conv2_1": 128, "conv2_2": 128}
    for i, name in enumerate(VGG16_CONVS[:n_convs]):
        lp = net.layer.add()
        lp.CopyFrom(conv11)
        lp.name = name
        lp.bottom[:] = [bottom]
        lp.top[:] = [name]
        lp.convolution_param.num_output = channels[name]
        bottom = name
        if name == "conv1_2":
            pool = net.layer.add()
            pool.CopyFrom(by_name["pool1"])
            pool.bottom[:] = [bottom]
            bottom = "pool1"
    if pool_after and bottom != "pool1":
        pool = net.layer.add()
        pool.CopyFrom(by_name["pool1"])
        pool.name = pool.top[0] = f"pool{1 + (n_convs > 2)}"
        pool.bottom[:] = [bottom]
        bottom = pool.name
    if fc_from_pool1:
        bottom = "pool1"
    for i, w in enumerate(widths):
        name = f"fc{6 + i}"
        lp = net.layer.add()
        lp.CopyFrom(by_name["fc6"])
        lp.name = name
        lp.bottom[:] = [bottom]
        lp.top[:] = [name]
        lp.inner_product_param.num_output = w
        bottom = name
    fc8 = net.layer.add()
    fc8.CopyFrom(by_name["fc8"])
    fc8.bottom[:] = [bottom]
    return net


def vgg_r_candidates(inputs=(80,)):
    """Readings of VGG_R: the first 1-4 VGG16 convs (text: 2), a 2x2 max pool after the last one or not, the first
    FC layer reading the last blob or pool1 (later convs then feed nothing), zero to two hidden FC layers (text: fc6
    and fc7) of widths 4096 .. 2, and the 2-way fc8."""
    hidden = [()] + [(w,) for w in VGG_FC_WIDTHS] + list(itertools.product(VGG_FC_WIDTHS, repeat=2))
    for n, pool_after, from_pool1, widths, hw in itertools.product(range(1, 5), (True, False), (False, True),
                                                                   hidden, inputs):
        if from_pool1 and n <= 2:
            continue  # pool1 is already the last blob
        if pool_after and (n == 2 or from_pool1):
            continue  # pool1 follows conv1_2 in VGG16 anyway; a pool nobody reads changes nothing
        departures = []
        if n != 2:
            departures.append(f"{n} convolution layers ({', '.join(VGG16_CONVS[:n])}; text: 2)")
        if n == 1 and pool_after or n > 2 and pool_after:
            departures.append("a 2x2 max pool after the last convolution")
        if from_pool1:
            dead = VGG16_CONVS[2:n]
            verb = "feeds" if len(dead) == 1 else "feed"
            departures.append(f"the first FC layer reads pool1; {' and '.join(dead)} {verb} nothing")
        if len(widths) < 2 or any(w != 4096 for w in widths):
            departures.append("FC layers " + (" -> ".join(["fc" + str(6 + i) + " " + str(w)
                                                            for i, w in enumerate(widths)]) or "none")
                              + " before fc8 (text: fc6 4096, fc7 4096)")
        if hw != 80:
            departures.append(f"input {hw} (text and Table 3: 80)")
        knobs = {"convs": n, "pool_after_last_conv": pool_after and n != 2, "fc_reads_pool1": from_pool1,
                 "hidden_fc": list(widths), "input": hw}
        yield Candidate("VGGNet_R", knobs, departures, True, _vgg_net(n, pool_after, from_pool1, widths, hw))


SEARCHES = {"GoogleNet_R": googlenet_r_candidates, "VGGNet_R": vgg_r_candidates}


@dataclass
class Ranked:
    row: AuditRow
    knobs: dict
    departures: list

    def key(self):
        return (not self.row.exact, self.row.verdict != "match", len(self.departures),
                max(abs(self.row.rel_dev_macc), abs(self.row.rel_dev_params)))


def search(net_name: str, table: dict[str, Table2Row] | None = None) -> tuple[list[Ranked], int]:
    """Count every candidate reading of ``net_name``; return them ranked (best first) and the number of candidates
    Caffe would reject (shape errors, e.g. a 7x7 pool on a 3x3 map)."""
    table = table or read_table2()
    ranked, invalid = [], 0
    for cand in SEARCHES[net_name]():
        try:
            net = load_net(cand.proto, batch=1)
        except NetDefinitionError:
            invalid += 1
            continue
        cost = net_cost(net, count_lrn=cand.count_lrn)
        row = judge(net_name, "search", table[net_name], cost.macc, cost.params, _input_of(net),
                    explanation=cand.describe())
        ranked.append(Ranked(row, cand.knobs, cand.departures))
    ranked.sort(key=Ranked.key)
    return ranked, invalid


# ---------------------------------------------------------------------------------------------------------------
# Findings (compare/data/architecture_findings.json).
# ---------------------------------------------------------------------------------------------------------------
EXPLANATIONS = {
    ("GoogleNet", "text"):
        "BVLC GoogLeNet deploy net with a 2-way loss3/classifier: 1,585,664,000 MACC (LRN counted) and 5,975,602 "
        "weights+biases (+4 LRN 'params'); Table 2's 1.59G and 5.98M are these numbers rounded. The auxiliary "
        "classifiers (train_val only) are not counted by Table 2: with them params would be 10.31M.",
    ("GoogleNet_R", "text"):
        "The text's GoogleNet_R (conv1 32x5x5 pad 2 stride 1, pool1 stride 1, 64x64 input) keeps the feature maps "
        "4x larger than Table 2 implies: inception_5b is 7x7 and MACC is 1.73G, 4.45x Table 2's 388.77M. Params "
        "(5.97M, -0.23%) are within tolerance.",
    ("GoogleNet_R", "table2"):
        "Table 2 is reproduced to every printed digit when conv1 keeps stride 2 (the text says 1; the other conv1 "
        "changes and pool1 stride 1 as the text says) and the classifier reads inception_5b/output (3x3x1024) "
        "directly: BVLC's 7x7 pool5 cannot run on a 3x3 map, and a global pool5 gives 388.75M/5.97M instead. "
        "Unique exact match among the searched readings with the stated 64x64 input.",
    ("VGGNet_R", "text"):
        "The text's VGG_R (conv1_1, conv1_2, pool1, fc6 4096, fc7 4096, fc8 2 at 80x80) has fc6 = 102400 x 4096 "
        "weights: 436.26M params and 683.20M MACC against Table 2's 317.38K and 365.16M. No reading with 4096-wide "
        "FC layers comes near Table 2's params.",
    ("VGGNet_R", "table2"):
        "Table 2 is reproduced to every printed digit by conv1_1, conv1_2, pool1 and a single 2-way FC layer reading "
        "pool1 (102400 x 2 weights), with conv2_1 also present but feeding nothing: 365,158,400 MACC and 317,378 "
        "params. The convolutions account for 364.95M MACC (conv1_1, conv1_2 and conv2_1 at 80x80, 112,576 params), "
        "which fixes three VGG convs; the remaining ~204.8K params fix inputs x outputs of the FC part at 204,800. "
        "The functioning net is the text's 'first 2 convolution layers' with one 2-way FC layer, not 'all the fully "
        "connected layers'.",
    ("CIFAR", "text"):
        "BVLC CIFAR-10 full at 80x80 with a 2-way ip1: 92,130 weights+biases (Table 2: 92.13K) and 76.8M conv MACC + "
        "12.8K ip1 + 192K LRN = 77.00M (Table 2: 77M).",
}


def findings(table: dict[str, Table2Row] | None = None, top: int = 3) -> dict:
    """The audit and the search as data: every audited prototxt, then each search's best readings."""
    table = table or read_table2()
    out = {"source": "python -m models audit --write-findings (models/audit.py)",
           "tolerance": TOLERANCE,
           "counting": "models.accounting.net_cost, batch 1: conv/InnerProduct weights + biases; LRN MACC = "
                       "output elements x local_size and 2 params per LRN layer",
           "audit": [], "search": []}
    for row in audit(table):
        row.explanation = EXPLANATIONS.get((row.net, row.reading), row.explanation)
        out["audit"].append(asdict(row))
    for name in SEARCHES:
        ranked, invalid = search(name, table)
        exact = [r for r in ranked if r.row.exact]
        out["search"].append({
            "net": name, "candidates": len(ranked) + invalid, "rejected_by_caffe_shapes": invalid,
            "exact_matches": len(exact),
            "within_tolerance": sum(r.row.verdict == "match" for r in ranked),
            "best": [dict(asdict(r.row), knobs=r.knobs, departures=r.departures) for r in ranked[:top]],
        })
    return out


def write_json_atomic(path: Path, data) -> None:
    from models.atomic import write_json

    write_json(path, data, indent=2, sort_keys=False)


# ---------------------------------------------------------------------------------------------------------------
# CLI.
# ---------------------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--layers", metavar="NET",
                   help="per-layer MACC/params of NET (a Table 2 row such as GoogleNet_R, or a prototxt/ folder)")
    p.add_argument("--search", action="store_true",
                   help="search the readings of the text for those that reproduce Table 2 (GoogleNet_R, VGGNet_R)")
    p.add_argument("--top", type=int, default=5, help="with --search: how many readings to show per net")
    p.add_argument("--write-findings", metavar="PATH", nargs="?", const="",
                   help=f"write the audit and search results as JSON (default {FINDINGS_JSON})")


def main(args) -> int:
    table = read_table2()
    if args.layers:
        net = load_net(str(_resolve_net(args.layers)), batch=1)
        cost = net_cost(net)
        if args.json:
            print(json.dumps(cost.to_dict(), indent=2))
            return 0
        print(f"{'layer':<34}{'type':<14}{'top shape':<24}{'MACC':>15}{'params':>13}")
        for l in cost.layers:
            if l.macc or l.params:
                shape = ", ".join(str(tuple(s)) for s in l.top_shapes)
                print(f"{l.name:<34}{l.type:<14}{shape:<24}{l.macc:>15,}{l.params:>13,}")
        print(f"{'total (layers without MACC or params omitted)':<72}{cost.macc:>15,}{cost.params:>13,}")
        print(f"MACC {human(cost.macc)}  params {human(cost.params)}")
        return 0
    if args.write_findings is not None:
        if not args.write_findings:
            args.write_findings = str(_paper_data("architecture_findings.json"))
        data = findings(table)
        write_json_atomic(Path(args.write_findings), data)
        print(f"wrote {args.write_findings}")
        return 0
    if args.search:
        results = {}
        for name in SEARCHES:
            ranked, invalid = search(name, table)
            results[name] = (ranked, invalid)
        if args.json:
            print(json.dumps({n: {"rejected_by_caffe_shapes": inv, "candidates": len(r) + inv,
                                  "best": [dict(asdict(x.row), knobs=x.knobs) for x in r[:args.top]]}
                              for n, (r, inv) in results.items()}, indent=2))
            return 0
        for name, (ranked, invalid) in results.items():
            exact = sum(r.row.exact for r in ranked)
            print(f"{name}: {len(ranked) + invalid} readings, {invalid} rejected by Caffe's shape rules, "
                  f"{exact} exact (Table 2's printed digits), "
                  f"{sum(r.row.verdict == 'match' for r in ranked)} within {100 * TOLERANCE:g}%")
            print("  " + HEADER)
            for r in ranked[:args.top]:
                print("  " + r.row.line())
                print(f"      {r.row.explanation}; LRN counted: {r.knobs.get('lrn_counted', True)}"
                      + (f"; aux classifiers counted: {r.knobs['aux']}" if "aux" in r.knobs else ""))
        return 0
    rows = audit(table)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    print(HEADER)
    for r in rows:
        print(r.line())
    print(f"\nmatch: MACC and params within {100 * TOLERANCE:g}% of Table 2; exact: both round to Table 2's digits."
          "\ntext = prototxt/<net>/ (the paper's text); table2 = prototxt/<net>_table2/ (python -m models audit "
          "--search)")
    return 0
