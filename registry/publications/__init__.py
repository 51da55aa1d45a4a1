"""The publications register (frameworks, placement protocols, fee caps): signed, versioned, compared.

Local data only — the documents this node publishes, and verified copies of peers' it has fetched; whether a
peer may read them is decided above, by agreements. Imports ``registry.core`` and ``schemas`` only.

``models`` storage and wire models · ``kinds`` the three kinds and the rules a schema cannot say ·
``service`` publish / update (If-Match) / withdraw / read / diff · ``signatures`` what is signed and checking
it · ``patch`` RFC 6902 diff · ``feecaps`` the fee-cap check (``fee_within_cap``) · ``compare`` the side-by-side
views · ``copies`` peers' versions, verified before they are held, and the gather hook · ``synth``
synthetic documents for a region · ``api`` the routes · ``errors`` problem+json classes.
"""
