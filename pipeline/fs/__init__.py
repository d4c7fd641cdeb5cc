"""Filesystem trees: build contexts, layer directories and their tar forms.

``patterns``, ``context`` and ``contexthash`` select and digest COPY sources;
``layerstack`` and ``copier`` make COPY layers without mounting; ``tarformat``,
``tarwrite``, ``tarread`` and ``extract`` convert between layer dirs and tar streams;
``importer`` reads image archives. Every path from outside is treated as hostile.
"""
