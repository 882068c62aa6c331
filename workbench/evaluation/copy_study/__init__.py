"""The copy-verdict study's parts; the tool is `python -m workbench.evaluation.copy_verdict`.

edits.py (the photo edits and crops), distractors.py (the wallpapers that are never copies),
dataset.py (descriptors, the stores' items and the queries), recording.py (the evidence per
query and store), rule_fit.py (evidence in, rule out: pure numpy), folds.py (held-out rates by
picture), served.py (the served path with the final rule), report.py (timing summaries and the
rule file), study.py (the whole run in order and its JSON), progress.py (lines on stderr).
"""
