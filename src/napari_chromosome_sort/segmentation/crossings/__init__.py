"""Chromosomes lying across each other.

* :mod:`.detect`: a kept piece that is two crossing chromosomes (one piece, or cut through its
  overlap) is set aside as ``cluster``;
* :mod:`.resolve`: an X- or T-shaped crossing is resolved into two ``crossing-resolved``
  chromosome objects that share the crossing pixels.
"""
