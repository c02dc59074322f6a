"""The long-tail world: pictographs with their Unicode CLDR names in English and any CLDR language,
on coloured grounds, with Zipfian concept frequency (docs/longtail.md). `build.py` is the builder
(`python -m data_prep longtail`); `held_out.py` renders the single-object pictures of the teacher's
zero-shot test; `examples.py` writes a page of example pictures with their captions."""
