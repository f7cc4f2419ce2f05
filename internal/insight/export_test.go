package insight

// MaxKeys exports maxKeys to the tests.
const MaxKeys = maxKeys
