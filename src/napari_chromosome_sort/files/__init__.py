"""Everything read from or written to disk, under the write rule of :mod:`.safety`.

* :mod:`.safety`, :mod:`.atomic`: names and paths checked before they touch the disk; files
  written whole or not at all;
* :mod:`.io`: spreads and crops read, grey conversion, polarity;
* :mod:`.dataset`: the labelled crop store (a folder per class + ``manifest.csv``);
* :mod:`.label_import`: boxes a lab already has -> that crop store;
* :mod:`.work`: the work on a spread saved as one ``.chromosort`` folder.
"""
