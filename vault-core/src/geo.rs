//! Administrative units of Ho Chi Minh City used by jurisdictions and demo data: districts
//! (3-digit GSO codes, the 2019 list) with some of their wards (5-digit codes). Quận 1's ward
//! codes are the official ones; the other wards' codes are illustrative, for demo data only.

/// A district with a sample of its wards.
#[derive(Debug)]
pub struct District {
    /// 3-digit district code.
    pub code: &'static str,
    /// Vietnamese name.
    pub name: &'static str,
    /// (5-digit ward code, ward name).
    pub wards: &'static [(&'static str, &'static str)],
}

/// The districts the vault knows, with some wards each.
pub const HCMC_DISTRICTS: &[District] = &[
    District {
        code: "760",
        name: "Quận 1",
        wards: &[
            ("26734", "Phường Tân Định"),
            ("26737", "Phường Đa Kao"),
            ("26740", "Phường Bến Nghé"),
            ("26743", "Phường Bến Thành"),
            ("26746", "Phường Nguyễn Thái Bình"),
            ("26749", "Phường Phạm Ngũ Lão"),
            ("26752", "Phường Cầu Ông Lãnh"),
            ("26755", "Phường Cô Giang"),
            ("26758", "Phường Nguyễn Cư Trinh"),
            ("26761", "Phường Cầu Kho"),
        ],
    },
    District {
        code: "770",
        name: "Quận 3",
        wards: &[
            ("27139", "Phường Võ Thị Sáu"),
            ("27142", "Phường 9"),
            ("27145", "Phường 4"),
            ("27148", "Phường 5"),
            ("27151", "Phường 11"),
        ],
    },
    District {
        code: "773",
        name: "Quận 4",
        wards: &[
            ("27259", "Phường 13"),
            ("27262", "Phường 9"),
            ("27265", "Phường 8"),
            ("27268", "Phường 15"),
        ],
    },
    District {
        code: "774",
        name: "Quận 5",
        wards: &[
            ("27301", "Phường 11"),
            ("27304", "Phường 2"),
            ("27307", "Phường 4"),
            ("27310", "Phường 12"),
        ],
    },
    District {
        code: "775",
        name: "Quận 6",
        wards: &[
            ("27343", "Phường 14"),
            ("27346", "Phường 13"),
            ("27349", "Phường 9"),
        ],
    },
    District {
        code: "778",
        name: "Quận 7",
        wards: &[
            ("27475", "Phường Tân Thuận Đông"),
            ("27478", "Phường Tân Thuận Tây"),
            ("27481", "Phường Tân Kiểng"),
            ("27484", "Phường Tân Hưng"),
            ("27487", "Phường Bình Thuận"),
            ("27490", "Phường Tân Quy"),
            ("27493", "Phường Phú Thuận"),
            ("27496", "Phường Tân Phú"),
            ("27499", "Phường Tân Phong"),
            ("27502", "Phường Phú Mỹ"),
        ],
    },
    District {
        code: "776",
        name: "Quận 8",
        wards: &[
            ("27403", "Phường 8"),
            ("27406", "Phường 2"),
            ("27409", "Phường 1"),
            ("27412", "Phường 3"),
        ],
    },
    District {
        code: "771",
        name: "Quận 10",
        wards: &[
            ("27163", "Phường 15"),
            ("27166", "Phường 13"),
            ("27169", "Phường 14"),
            ("27172", "Phường 12"),
        ],
    },
    District {
        code: "772",
        name: "Quận 11",
        wards: &[
            ("27211", "Phường 15"),
            ("27214", "Phường 5"),
            ("27217", "Phường 14"),
        ],
    },
    District {
        code: "761",
        name: "Quận 12",
        wards: &[
            ("26764", "Phường Thạnh Xuân"),
            ("26767", "Phường Thạnh Lộc"),
            ("26770", "Phường Hiệp Thành"),
            ("26773", "Phường Thới An"),
            ("26776", "Phường Tân Chánh Hiệp"),
        ],
    },
    District {
        code: "765",
        name: "Quận Bình Thạnh",
        wards: &[
            ("26899", "Phường 13"),
            ("26902", "Phường 11"),
            ("26905", "Phường 27"),
            ("26908", "Phường 26"),
            ("26911", "Phường 12"),
            ("26914", "Phường 25"),
        ],
    },
    District {
        code: "764",
        name: "Quận Gò Vấp",
        wards: &[
            ("26869", "Phường 15"),
            ("26872", "Phường 13"),
            ("26875", "Phường 17"),
            ("26878", "Phường 6"),
            ("26881", "Phường 16"),
        ],
    },
    District {
        code: "768",
        name: "Quận Phú Nhuận",
        wards: &[
            ("27043", "Phường 4"),
            ("27046", "Phường 5"),
            ("27049", "Phường 9"),
            ("27052", "Phường 7"),
        ],
    },
    District {
        code: "766",
        name: "Quận Tân Bình",
        wards: &[
            ("26977", "Phường 2"),
            ("26980", "Phường 4"),
            ("26983", "Phường 12"),
            ("26986", "Phường 13"),
        ],
    },
    District {
        code: "767",
        name: "Quận Tân Phú",
        wards: &[
            ("27007", "Phường Tân Sơn Nhì"),
            ("27010", "Phường Tây Thạnh"),
            ("27013", "Phường Sơn Kỳ"),
            ("27016", "Phường Tân Quý"),
        ],
    },
    District {
        code: "777",
        name: "Quận Bình Tân",
        wards: &[
            ("27439", "Phường Bình Hưng Hòa"),
            ("27442", "Phường Bình Hưng Hoà A"),
            ("27445", "Phường Bình Hưng Hoà B"),
            ("27448", "Phường Bình Trị Đông"),
        ],
    },
    District {
        code: "769",
        name: "Thành phố Thủ Đức",
        wards: &[
            ("26794", "Phường Linh Xuân"),
            ("26797", "Phường Bình Chiểu"),
            ("26800", "Phường Linh Trung"),
            ("26803", "Phường Tam Bình"),
            ("26806", "Phường Tam Phú"),
            ("26809", "Phường Hiệp Bình Phước"),
            ("26812", "Phường Thảo Điền"),
            ("26815", "Phường An Phú"),
        ],
    },
    District {
        code: "783",
        name: "Huyện Củ Chi",
        wards: &[
            ("27595", "Thị trấn Củ Chi"),
            ("27598", "Xã Phú Mỹ Hưng"),
            ("27601", "Xã An Phú"),
        ],
    },
    District {
        code: "784",
        name: "Huyện Hóc Môn",
        wards: &[
            ("27658", "Thị trấn Hóc Môn"),
            ("27661", "Xã Tân Hiệp"),
            ("27664", "Xã Nhị Bình"),
        ],
    },
    District {
        code: "785",
        name: "Huyện Bình Chánh",
        wards: &[
            ("27691", "Thị trấn Tân Túc"),
            ("27694", "Xã Phạm Văn Hai"),
            ("27697", "Xã Vĩnh Lộc A"),
        ],
    },
    District {
        code: "786",
        name: "Huyện Nhà Bè",
        wards: &[
            ("27733", "Thị trấn Nhà Bè"),
            ("27736", "Xã Phước Kiển"),
            ("27739", "Xã Phước Lộc"),
        ],
    },
    District {
        code: "787",
        name: "Huyện Cần Giờ",
        wards: &[
            ("27760", "Thị trấn Cần Thạnh"),
            ("27763", "Xã Bình Khánh"),
            ("27766", "Xã Tam Thôn Hiệp"),
        ],
    },
];

/// The district with this code.
pub fn district(code: &str) -> Option<&'static District> {
    HCMC_DISTRICTS.iter().find(|d| d.code == code)
}

/// The district that contains this ward code.
pub fn district_of_ward(ward: &str) -> Option<&'static District> {
    HCMC_DISTRICTS
        .iter()
        .find(|d| d.wards.iter().any(|(c, _)| *c == ward))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut seen = HashSet::new();
        for d in HCMC_DISTRICTS {
            assert_eq!(d.code.len(), 3);
            assert!(seen.insert(d.code));
            for (w, _) in d.wards {
                assert_eq!(w.len(), 5);
                assert!(seen.insert(*w), "duplicate ward code {w}");
            }
        }
        assert_eq!(district_of_ward("26740").unwrap().code, "760");
    }
}
