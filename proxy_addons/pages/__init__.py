"""The gateway's own HTML pages (block page, portal, reports), rendered from its templates."""
