"""Evaluation with lmms-eval: a plug-in, not a fork.

``pip install prunesid[eval]`` registers model ids with lmms-eval through the
``lmms_eval.models`` entry-point group (one entry point, ``prunesid.eval.manifest``, returning
a manifest per model id the families declare). Each reuses lmms-eval's own model class for its
family (``prunesid/families/<name>/lmms_eval_model.py``) and takes the press from ``--model_args``::

    lmms-eval --model prunesid_llava_hf \\
        --model_args pretrained=llava-hf/llava-1.5-7b-hf,method=prunesid,budget=64 \\
        --tasks pope,mme,seedbench --output_path results/ --log_samples

- ``prunesid.eval.settings``: ``--model_args`` split into ours (``method``, the press's own
  fields, ``records``) and the lmms-eval class's, each value checked (a wrong one fails
  with a message naming the argument).
- ``prunesid.eval.pressing``: how a press reaches the model: for the duration of one
  ``generate_until`` call the instance's model and processor are seen through thin views;
  the images the processor receives are compressed by :class:`prunesid.vlm.VLM` (the same
  path as ``VLM.chat``) and each image's placeholder run in lmms-eval's own prompt is cut to
  what the press kept. Nothing is patched on any class.
- ``prunesid.eval.models``: what the families' lmms-eval classes share (``PressedModel``);
  ``prunesid.eval.library_models``: the class for a family lmms-eval has none for.
- ``prunesid.eval.table``: lmms-eval result files -> the paper's table.

Importing this package does not import lmms-eval.
"""

from prunesid.eval.settings import EvalSettings, parse_model_args

__all__ = ["EvalSettings", "parse_model_args"]
