"""The biological readout and how far to trust the classifier.

* :mod:`.readout`: per-sample class shares with intervals, per-spread variation, the sample
  comparison (numpy, scipy, pandas only);
* :mod:`.compare`: the headline comparison of two samples, spreads as the replicates;
* :mod:`.spreads`: the statistics with spreads as replicates (quasi-binomial, permutations);
* :mod:`.chromosome_test`: the per-chromosome chi-square of two samples;
* :mod:`.confusion`: the classifier's own error carried into the shares and intervals;
* :mod:`.metrics`: agreement metrics, stratified cross-validation, learning curves;
* :mod:`.agreement`: annotator agreement (concordance, Cohen's kappa);
* :mod:`.plots`: the readout plots (matplotlib figures, no pyplot state).

The public names below are imported on first use (:pep:`562`): importing this package imports
neither scipy nor matplotlib.
"""

from napari_chromosome_sort._lazy import lazy_exports

_EXPORTS = {
    "summarize": ".readout",
    "spread_summary": ".readout",
    "compare_all": ".readout",
    "comparison_lines": ".readout",
    "calls_from_folder": ".readout",
    "SampleComparison": ".compare",
    "compare_pair": ".compare",
    "Comparison": ".chromosome_test",
    "compare_counts": ".chromosome_test",
    "Confusion": ".confusion",
    "load_confusion": ".confusion",
    "evaluate": ".metrics",
    "crossvalidate": ".metrics",
    "learning_curve": ".metrics",
    "agreement": ".agreement",
    "cohen_kappa": ".agreement",
    "stacked_bar": ".plots",
    "save_figure": ".plots",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
