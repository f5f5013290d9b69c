//! The online leak detector. (Being written; see the API contract in the module docs once filled.)
