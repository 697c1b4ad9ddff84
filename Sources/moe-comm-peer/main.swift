// The collectives test peer (filled by the collectives work).
