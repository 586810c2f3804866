"""Pictures of a dump and of a diff (`kmtool inspect --svg`, `kmtool diff --svg`; docs/design.md).

kmtool/svgkit.py holds the SVG conventions shared with the layout plan (kmtool/layout/svg.py);
scale the compressed axis, track the drawing of one row of blocks, physical and virtual the blocks
of a dump, dump and diff the two documents.
"""
