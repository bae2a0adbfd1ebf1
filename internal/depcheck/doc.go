// Package depcheck holds the test that keeps apiguard's public packages
// independent: none imports another, and each heavy dependency is
// imported only by the packages that need it.
package depcheck
