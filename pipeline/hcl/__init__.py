"""HCL2: parsing spec text into located syntax trees and evaluating expressions.

``syntax`` (the only importer of python-hcl2 and lark) builds the trees of ``values``;
``files`` parses and caches files; ``evaluator`` and ``functions`` compute values. Pure
apart from ``files`` reading the file it is given.
"""
