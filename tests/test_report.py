"""End to end: the smoke profile executes the five notebooks with papermill and builds the book with
warnings as errors, in a temporary copy of the book's sources (the ``smoke_report`` fixture)."""

import re

from musicscale.identification import format_ci
from musicscale.pipeline import STAGES
from musicscale.workdir import Workdir, read_json

SEED_OUTPUTS = ("scaling_laws.png", "architecture_comparison.png", "training_curves.png", "holdout.png",
                "experiment_results.json")


def test_book_has_every_page_with_computed_findings(smoke_report):
    root, timings = smoke_report
    html = root / "_build" / "html"
    assert (html / "index.html").exists() and "book" in timings
    for stage in STAGES:
        page = (html / "book" / "stages" / f"{stage}.html").read_text()
        assert "injected-parameters" not in page  # papermill's cell is hidden; the parameter table shows
        assert "parameter" in page
    results = read_json(Workdir(root / "work").experiment_results)
    findings = re.sub(r"<[^>]+>", "", (html / "book" / "findings.html").read_text())  # the text, without tags
    methods = re.sub(r"<[^>]+>", "", (html / "book" / "methods.html").read_text())
    assert f"{len(results['runs'])} runs in all" in methods  # how the findings are read moved to methods
    law = results["datasets"]["music21"]["joint"]["transformer"]
    assert format_ci(law, "alpha") in " ".join(findings.split())  # with its interval, or why it has none
    assert "{glue" not in findings
    assert len(list((html / "_images").glob("*.png"))) >= 6  # the analysis figures and the validity figure


def test_run_folder_holds_the_seed_outputs_and_the_gallery(smoke_report):
    root, _ = smoke_report
    wd = Workdir(root / "work")
    for name in SEED_OUTPUTS:
        assert (wd.results_dir / name).stat().st_size > 0, name
    results = read_json(wd.experiment_results)
    synthetic = results["datasets"]["synthetic"]
    assert synthetic["entropy_rate"] > 0 and synthetic["below_floor"] == []
    for arch in ("transformer", "lstm"):
        assert {"E", "alpha", "beta", "alpha_ci", "r2", "n_boot", "n_failed"} <= set(synthetic["joint"][arch])
        assert set(synthetic["holdout"][arch]) == {"N", "D"} and "fixed_floor" in synthetic["ground_truth"][arch]
    gallery = (root / "_build" / "html" / "book" / "stages" / "05_generate.html").read_text()
    assert "<svg" in gallery and "data:audio/ogg;base64," in gallery and "audio/wav" not in gallery


# --- the HTML as a reader's browser shows it ---------------------------------------------------------------

MAX_PAGE_BYTES = 2_000_000
RAW_TABLE = re.compile(r"\|\s*:?(-{3}|—)")  # a Markdown table's rule row, as written or after smart quotes
NAN = re.compile(r"\b(nan|NaN)\b")
REMOTE = re.compile(r"^(https?:)?//")
LOADED = {"stylesheet", "preload", "modulepreload", "icon", "shortcut", "manifest"}


def pages(root):
    html = root / "_build" / "html"
    return sorted(p for p in html.rglob("*.html") if not {"_static", "_sources"} & set(p.relative_to(html).parts))


def soup_of(path):
    from bs4 import BeautifulSoup

    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


def visible_text(soup) -> str:
    """The text a reader sees before MathJax runs: no scripts, styles, sheet music or ABC source, and no
    math (MathJax typesets the elements of class "math")."""
    for tag in soup.select("script, style, svg, .musicscale-tune pre, .math"):
        tag.decompose()
    return soup.get_text(" ")


def test_every_page_is_small_and_loads_nothing_from_the_network(smoke_report):
    root, _ = smoke_report
    html = root / "_build" / "html"
    found = pages(root)
    assert {"findings.html", "04_analyze.html", "05_generate.html"} <= {p.name for p in found}
    for page in found:
        assert page.stat().st_size <= MAX_PAGE_BYTES, (page.name, page.stat().st_size)
        soup = soup_of(page)
        refs = [t["src"] for t in soup.find_all(["script", "img", "audio", "source", "iframe"], src=True)]
        links = soup.find_all("link", href=True)
        refs += [t["href"] for t in links if LOADED & set(t.get("rel", []))]  # what the browser fetches
        assert not [r for r in refs + [t["href"] for t in links] if REMOTE.match(r)], page.name
        for ref in refs:
            if ref.startswith("data:"):
                continue
            local = (page.parent / ref.split("?")[0].split("#")[0]).resolve()
            assert local.is_file(), (page.name, ref)
            if local.suffix == ".css":
                assert not re.search(r"url\(\s*['\"]?(https?:)?//", local.read_text(encoding="utf-8")), ref
    mathjax = [t["src"] for t in soup_of(html / "book" / "findings.html").find_all("script", src=True)
               if "mathjax" in t["src"].lower()]
    assert mathjax and all(not REMOTE.match(s) for s in mathjax)  # math is typeset by the bundled MathJax


def test_tables_figures_and_text_as_a_reader_sees_them(smoke_report):
    root, _ = smoke_report
    for page in pages(root):
        soup = soup_of(page)
        for figure in soup.find_all("figure"):
            number = figure.select_one("figcaption .caption-number")
            assert number and re.fullmatch(r"Fig\. \d+\s*", number.get_text()), page.name
            assert len(figure.figcaption.get_text(strip=True)) > len(number.get_text()) + 10, page.name
        for output in soup.select(".cell_output"):
            assert not RAW_TABLE.search(visible_text(soup_of_fragment(output))), page.name
        text = visible_text(soup)
        assert not RAW_TABLE.search(text), page.name
        assert "\\(" not in text and "\\[" not in text, page.name
        assert not NAN.search(text), (page.name, NAN.search(text) and text[NAN.search(text).start() - 80:][:160])
    analyze = soup_of(root / "_build" / "html" / "book" / "stages" / "04_analyze.html")
    assert len(analyze.select(".cell_output table")) >= 3  # parameters, fits, compute
    numeric = analyze.select(".cell_output table td.text-right")
    assert numeric  # numbers are right-aligned
    for stage in STAGES:
        soup = soup_of(root / "_build" / "html" / "book" / "stages" / f"{stage}.html")
        assert soup.select(".cell_output table"), stage  # at least the parameter table


def soup_of_fragment(tag):
    from bs4 import BeautifulSoup

    return BeautifulSoup(str(tag), "html.parser")


def test_gallery_plays_ogg_with_midi_downloads(smoke_report):
    root, _ = smoke_report
    soup = soup_of(root / "_build" / "html" / "book" / "stages" / "05_generate.html")
    players = soup.select(".musicscale-tune audio")
    assert players and all(a["src"].startswith("data:audio/ogg;base64,") for a in players)
    downloads = soup.select(".musicscale-tune a[download]")
    assert len(downloads) == len(players)
    assert all(a["href"].startswith("data:audio/midi;base64,") and a["download"].endswith(".mid") for a in downloads)
    captions = soup.select(".musicscale-caption")
    assert captions and "qualifies" in captions[0].get_text()
    notes = [n.get_text() for n in soup.select(".musicscale-note")]
    assert all("samples qualified" in n or ("Prompted with" in n and "samples obey it" in n) for n in notes)
    assert any("Prompted with" in n for n in notes)  # the largest models' prompted samples, beside the others


def test_the_study_design_the_prose_states_is_glued_from_this_build(smoke_report):
    from musicscale.pipeline import PROFILES
    from musicscale.stages import train

    root, _ = smoke_report
    html = root / "_build" / "html" / "book"
    reproduce = soup_of(html / "reproduce.html")
    rows = [[td.get_text(" ", strip=True) for td in tr.find_all("td")] for tr in reproduce.select("table tbody tr")]
    assert [r[0] for r in rows] == list(PROFILES)  # the profile table, generated from PROFILES
    assert rows[0][2] == ", ".join(train.Params().sizes)  # smoke runs the stage's defaults
    def squashed(page: str) -> str:  # the text without white space (a glued value is an element of its own)
        return re.sub(r"\s+", "", visible_text(soup_of(html / page)))

    methods, design = squashed("methods.html"), train.Params()
    assert f"last{100 * design.cooldown_frac:g}%of" in methods
    assert f"thisbuildtrains{len(design.sizes)}sizesperfamily" in methods
    assert "n/a" not in methods and "{glue" not in methods
    kept = sum(s["tunes"] for s in read_json(Workdir(root / "work").corpus_report("music21"))["splits"].values())
    assert f"({kept:,}tunesaftercleaning)" in squashed("intro.html")


def test_the_pages_say_how_often_a_token_was_read_and_what_a_repeat_is_worth(smoke_report):
    """The training page states the largest epochs per dataset (the grammar's at most 1: no token read twice)
    and the findings page what a repeated token is worth, from the results of this build."""
    root, _ = smoke_report
    html = root / "_build" / "html" / "book"
    results = read_json(Workdir(root / "work").experiment_results)
    train_page = soup_of(html / "stages" / "03_train.html").get_text(" ")
    epochs = {d: max(p["epochs"] for r in results["runs"] if r["dataset"] == d for p in r["curve"])
              for d in results["datasets"]}
    assert 0 < epochs["synthetic"] <= 1
    assert "; ".join(f"{d}: {e:.2f}" for d, e in epochs.items()) in " ".join(train_page.split())
    findings = " ".join(soup_of(html / "findings.html").get_text(" ").split())
    assert "What a repeated token is worth, against a fresh one" in findings
    reps = results["datasets"]["synthetic"]["repetition"]
    for arch, rep in reps.items():
        assert f"for the {arch}, R*" in findings and rep["n_runs"] > 0
    assert "effective data" in findings or "within the fresh range" in findings
    assert (Workdir(root / "work").results_dir / "repetition.png").stat().st_size > 0


INTERVAL = re.compile(r"(?<![\w.])([-+−]?\d+\.\d+) \[([-+−]?\d+\.\d+), ([-+−]?\d+\.\d+)\]")
BOUNDED = ("E", "α", "β", "c", "fitted E", "L − H*: α", "L − H*: β", "single budget: α", "joint law: α", "α_C")


def _number(text: str) -> float:
    return float(text.replace("−", "-"))


def test_no_interval_is_a_search_bound_and_no_fit_worse_than_its_threshold_is_a_result(smoke_report):
    """What a reader sees: no interval collapsed to a point, no floor or exponent interval that ends on a bound of
    its search (0, or 5 for an exponent), and no row of a fit whose R² is below the threshold without "no fit"."""
    from musicscale.fitting import ALPHA_MAX
    from musicscale.identification import R2_MIN

    root, _ = smoke_report
    for page in pages(root):
        soup = soup_of(page)
        for value, lo, hi in INTERVAL.findall(" ".join(visible_text(soup_of(page)).split())):
            assert lo != hi, (page.name, value, lo, hi)
        for table in soup.select("table"):
            headers = [th.get_text(" ", strip=True) for th in table.select("thead th")]
            for tr in table.select("tbody tr"):
                cells = dict(zip(headers, (td.get_text(" ", strip=True) for td in tr.select("td"))))
                for header, cell in cells.items():
                    if header.split(" [")[0].split(" (")[0] in BOUNDED:
                        for _, lo, hi in INTERVAL.findall(cell):
                            ends = {_number(lo), _number(hi)}
                            assert not ends & {0.0, ALPHA_MAX}, (page.name, header, cell)
                r2 = cells.get("R²")
                if r2 and re.fullmatch(r"[-−]?\d+\.\d+", r2) and _number(r2) < R2_MIN:
                    assert any("no fit" in c for c in cells.values()), (page.name, cells)


def test_the_findings_cite_the_ablation_table(smoke_report):
    root, _ = smoke_report
    html = root / "_build" / "html" / "book"
    results = read_json(Workdir(root / "work").experiment_results)
    ablated = [d for d, ds in results["datasets"].items() if ds.get("ablation")]
    assert ablated == ["synthetic"]  # the smoke study's own: the synthetic dataset, the Transformer, its smallest size
    findings = soup_of(html / "findings.html")
    links = [a["href"] for a in findings.find_all("a", href=True) if "sec-ablation" in a["href"]]
    assert links and all(href.startswith("stages/04_analyze.html#") for href in links)
    text = " ".join(visible_text(findings).split())
    assert "the ablation" in text and "budget ×4" in text
    analyze = soup_of(html / "stages" / "04_analyze.html")
    table = next(t for t in analyze.select(".cell_output table") if "gap closed" in t.get_text())
    arms = [tr.select("td")[3].get_text(strip=True) for tr in table.select("tbody tr")]
    assert arms[:2] == ["baseline", "budget ×4"] and {"no-positions", "one-head"} <= set(arms)


def test_every_figure_is_redrawn_from_the_saved_results_alone(smoke_report, tmp_path):
    """Every figure of the report from ``experiment_results.json`` and ``generation_results.json`` and nothing else
    (no run folder, no live fit object): a reader of the two files redraws what the report shows, bit for bit."""
    import shutil

    import matplotlib.pyplot as plt

    from musicscale import plots
    from musicscale.workdir import FIGURES

    root, _ = smoke_report
    saved = Workdir(root / "work")
    alone = Workdir(tmp_path / "work")
    alone.results_dir.mkdir(parents=True)
    for path in (saved.experiment_results, saved.generation_results):
        shutil.copy(path, alone.results_dir / path.name)
    results, summaries = read_json(alone.experiment_results), read_json(alone.generation_results)
    searches = [s for ds in results["datasets"].values() for arch in ds["lr_search"].values() for s in arch]
    drawn = {"lr_search": searches, "validity_vs_size": summaries, "temperature_sweep": summaries}
    drawn |= {name: results for name in FIGURES if name not in drawn}
    assert set(drawn) == set(FIGURES)
    for name, data in drawn.items():
        plots.draw(name, data, alone.root)
        plt.close("all")  # a notebook shows what draw leaves open; here nothing does
        assert alone.figure(name).stat().st_size > 0, name
        if name != "lr_search":  # the same figure from the same numbers: the stage drew it from what it saved
            assert alone.figure(name).read_bytes() == saved.figure(name).read_bytes(), name


GLUE_ROLE = re.compile(r"\{glue(?::\w+)?\}`(?:[^`]*::)?(\w+)(?::[^`]*)?`")
GLUE_DIRECTIVE = re.compile(r"```\{glue(?::\w+)?\}\s+(\w+)")


def test_every_glue_name_the_book_cites_is_written_out_in_the_code(smoke_report):
    """A maintainer who reads a number in the book greps its glue name and finds where it is glued: the name itself,
    or (for ``<dataset>_<family>_<finding>`` names) every part that is not a dataset or family name, in quotes."""
    from pathlib import Path

    import nbformat

    import musicscale
    from musicscale.models import ARCHITECTURES

    root, _ = smoke_report
    texts = [p.read_text() for p in (root / "book").glob("*.md")]
    for nb in (root / "book" / "stages").glob("*.ipynb"):
        texts += [c.source for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "markdown"]
    names = {m for t in texts for pattern in (GLUE_ROLE, GLUE_DIRECTIVE) for m in pattern.findall(t)}
    assert len(names) > 30  # the parse found the references
    source = "\n".join(p.read_text() for p in Path(musicscale.__file__).parent.rglob("*.py"))
    datasets = read_json(Workdir(root / "work").experiment_results)["datasets"]
    prefixes = re.compile("|".join(sorted(map(re.escape, [*datasets, *ARCHITECTURES]), key=len, reverse=True)))
    missing = []
    for name in sorted(names):
        pieces = [p for p in prefixes.split(name) if p.strip("_")]
        if pieces == [name]:
            found = f'"{name}"' in source
        else:  # the finding's own part, written out where the name is built: f"{p}_joint_law"
            found = all(p in source for p in pieces) and f'{pieces[-1]}"' in source
        if not found:
            missing.append(name)
    assert not missing, f"glue names cited in the book that no code in musicscale/ writes out: {missing}"


# --- the findings page at a glance -------------------------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])[-+−]?\d[\d,]*(?:\.\d+)?%?")


def test_findings_open_with_a_verdict_table_and_headings_that_state_what_was_found(smoke_report):
    """What a reader sees first: at most 150 words, then one verdict per claim and dataset, each linking to its
    section; every heading below states a finding glued from this build (a dataset's own heading names it)."""
    from musicscale.report import book_contents, glued_texts

    root, _ = smoke_report
    html = root / "_build" / "html" / "book"
    soup = soup_of(html / "findings.html")
    main = soup.select_one("article") or soup  # the page itself, without the sidebars and their tables of contents
    label = main.select_one("#findings-verdicts")  # a stable anchor: the section's own id follows its heading
    assert label is not None
    verdicts = label if label.name == "section" else label.find_parent("section")
    intro = []
    for tag in main.select_one("h1").find_all_next(["p", "table"]):
        if tag.name == "table":
            break
        intro.append(tag.get_text(" "))
    assert len(" ".join(intro).split()) <= 150
    contents = book_contents(root / "book" / "stages")
    table = verdicts.select_one("table")
    headers = [th.get_text(" ", strip=True) for th in table.select("thead th")]
    assert headers == ["claim"] + [d.title for d in contents.datasets]
    rows = [[td for td in tr.select("td")] for tr in table.select("tbody tr")]
    assert len(rows) == 2 * len(contents.families) + 4  # law, floor per family; two gaps, repetition, bars
    for row in rows:
        assert len(row) == len(headers) and all(td.get_text(strip=True) for td in row)
    assert all(row[1].select("a[href]") for row in rows[:2 * len(contents.families)])  # each links to its section
    glued = {v for nb in (root / "book" / "stages").glob("*.ipynb") for v in glued_texts(nb).values()}
    titles = {d.title for d in contents.datasets}
    for h in main.select("section h2, section h3"):
        text = h.get_text(" ", strip=True).rstrip("#").strip().replace("’", "'")  # undo the smart quotes
        assert text in titles or text in glued, text
    for li in main.select("li"):  # numbers stay in tables: a list item carries at most three
        assert len(NUMBER.findall(visible_text(soup_of_fragment(li)))) <= 3, li.get_text(" ", strip=True)[:200]
